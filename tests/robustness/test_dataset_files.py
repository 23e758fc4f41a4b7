"""#19 class 5: labels come from the documented layout (never from whatever a path ends with), anything
else is refused naming the file, and empty or cut-short files are found before training starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_helpers import cli_in_process

import tawq_core
from tawq_core import DatasetNotFound

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins" / "datasets"))
from dataset_writers import write_aedat4, write_gesture_npy, write_nmnist_bin  # noqa: E402

EVENTS = [(3, 5, 1, 0), (33, 33, 0, 1000), (1, 2, 1, 20_000)]
TRAIN_NMNIST = ("train", "--model", "mlp", "--model-option", "hidden=[16]", "--dataset", "nmnist",
                "--dataset-option", "timesteps=2", "--epochs", "1", "--batch-size", "2", "--no-progress")


def _nmnist(root: Path) -> Path:
    for split in ("Train", "Test"):
        for digit in range(10):
            write_nmnist_bin(root / "NMNIST" / split / str(digit) / "00001.bin", EVENTS)
    return root


@pytest.mark.parametrize(("stray", "words"), [
    # the examples: a nested copy was labelled by its last character, "10" as 0
    ("Train/3/old_copy_7/x.bin", "Train/3/old_copy_7/x.bin is not where the documented layout puts files"),
    ("Train/10/x.bin", "Train/10/x.bin is not where the documented layout puts files"),
    ("Test/x.bin", "Test/x.bin is not where the documented layout puts files"),
])
def test_nmnist_files_outside_the_layout_are_refused_at_the_cli(tmp_path, stray, words):
    root = _nmnist(tmp_path / "data")
    write_nmnist_bin(root / "NMNIST" / stray, EVENTS)
    result = cli_in_process(*TRAIN_NMNIST, "--data-dir", root, "--out", tmp_path / "run")
    result.one_line_error("dataset 'nmnist'", words, "<0-9>/*.bin", "move or delete the file")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_zero_byte_bin_is_named_before_training(tmp_path):
    """The issue's example crashed mid-training with a numpy cast error."""
    root = _nmnist(tmp_path / "data")
    (root / "NMNIST" / "Train" / "5" / "00002.bin").write_bytes(b"")
    result = cli_in_process(*TRAIN_NMNIST, "--data-dir", root, "--out", tmp_path / "run")
    result.one_line_error("dataset 'nmnist': cannot read", "Train/5/00002.bin (the file is empty (0 bytes))",
                          "replace it with a fresh copy")


def test_labels_are_those_of_the_layout(tmp_path):
    splits = tawq_core.create("dataset", "nmnist", data_dir=str(_nmnist(tmp_path)), timesteps=2)
    assert [splits.train[i][1] for i in range(10)] == list(range(10))


def _gesture(root: Path) -> Path:
    for split, user in (("Train", "user01_fluorescent"), ("Test", "user24_led")):
        for label in range(11):
            write_gesture_npy(root / "DVSGesture" / f"ibmGesture{split}" / user / f"{label}.npy",
                              [(127, 0, 1, 0), (5, 6, 0, 10)])
    return root


@pytest.mark.parametrize("stray", ["user01_fluorescent/11.npy", "user01_fluorescent/old/3.npy", "3.npy",
                                   "user01_fluorescent/03.npy"])
def test_dvs_gesture_labels_outside_0_10_or_misplaced_files_are_refused(tmp_path, stray):
    root = _gesture(tmp_path)
    write_gesture_npy(root / "DVSGesture" / "ibmGestureTrain" / stray, [(1, 1, 1, 0)])
    with pytest.raises(DatasetNotFound, match="is not where the documented layout puts files"):
        tawq_core.create("dataset", "dvs-gesture", data_dir=str(root), timesteps=2, size=32)


def test_cifar10_dvs_class_taken_from_the_class_folder_not_a_nested_one(tmp_path):
    pytest.importorskip("aedat")
    from tawq_plugins.datasets.neuromorphic import CIFAR10_CLASSES

    for name in CIFAR10_CLASSES:
        write_aedat4(tmp_path / "CIFAR10DVS" / name / "a.aedat4", [(0, 1, 1, 1), (5, 2, 2, 0)])
    write_aedat4(tmp_path / "CIFAR10DVS" / "airplane" / "cat" / "b.aedat4", [(0, 1, 1, 1)])  # tonic: a cat
    with pytest.raises(DatasetNotFound, match=r"airplane/cat/b\.aedat4 is not where the documented layout"):
        tawq_core.create("dataset", "cifar10-dvs", data_dir=str(tmp_path), timesteps=2, size=32)


def test_a_truncated_gesture_npy_is_named_before_training(tmp_path):
    root = _gesture(tmp_path)
    bad = root / "DVSGesture" / "ibmGestureTest" / "user24_led" / "4.npy"
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(DatasetNotFound, match=r"cannot read .*user24_led/4\.npy"):
        tawq_core.create("dataset", "dvs-gesture", data_dir=str(root), timesteps=2, size=32)
