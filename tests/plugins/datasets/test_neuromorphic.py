"""shd, nmnist, dvs-gesture, cifar10-dvs: tiny files in the real layouts, read through tonic's readers."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import tonic.dataset
import tonic.download_utils
import torch
from dataset_writers import write_aedat4, write_gesture_npy, write_nmnist_bin, write_shd
from tonic.transforms import ToFrame

import tawq_core
from tawq_core import ConfigError, DatasetNotFound, Encoding, encode_batch
from tawq_plugins.datasets.neuromorphic import CIFAR10_CLASSES


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt by tonic to fetch something fails the test loudly (as it would offline)."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network access attempted in a test")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tonic.download_utils, "download_and_extract_archive", refuse)


def _shd_tree(root):
    # sample 0: five spikes on channels 0-4 at t=0 (one group), channel 5 at 0.5 s, 699 at 0.999 s,
    # and channel 10 at the very last timestamp (outside tonic's half-open last bin).
    write_shd(root / "SHD" / "shd_train.h5", [
        ([0, 0, 0, 0, 0, 0.5, 0.999, 1.0], [0, 1, 2, 3, 4, 5, 699, 10], 3),
        (list(np.linspace(0, 0.9, 50)), list(range(0, 700, 14)), 19),
    ])
    write_shd(root / "SHD" / "shd_test.h5", [([0.1, 0.2, 0.3], [7, 8, 9], 1)])


def test_shd_bins_700_channels_into_140_groups_of_5(tmp_path):
    _shd_tree(tmp_path)
    splits = tawq_core.create("dataset", "shd", data_dir=str(tmp_path), timesteps=4)
    assert splits.encoding is Encoding.TEMPORAL and splits.timesteps == 4
    assert splits.sample_shape == (140,) and splits.num_classes == 20
    assert (len(splits.train), len(splits.test)) == (2, 1)
    x, label = splits.train[0]
    assert x.shape == (4, 140) and x.dtype == torch.float32 and label == 3
    expected = torch.zeros(4, 140)
    expected[0, 0], expected[2, 1], expected[3, 139] = 5, 1, 1  # 1 s / 4 bins: 0 s, 0.5 s, 0.999 s
    assert torch.equal(x, expected)


def test_shd_default_binning_equals_tonic_frames_summed_in_groups(tmp_path):
    _shd_tree(tmp_path)
    splits = tawq_core.create("dataset", "shd", data_dir=str(tmp_path))
    x, label = splits.train[1]
    assert x.shape == (100, 140) and label == 19
    events, _ = splits.train.reader[1]
    full = ToFrame(sensor_size=(700, 1, 1), n_time_bins=100)(events)  # [100, 1, 700]
    assert np.array_equal(x.numpy(), full.reshape(100, 140, 5).sum(-1))
    batch = torch.stack([splits.train[i][0] for i in range(2)])
    assert encode_batch(batch, splits.encoding, 100).shape == (100, 2, 140)


def test_shd_options_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="divide 700"):
        tawq_core.create("dataset", "shd", data_dir=str(tmp_path), channels=150)
    with pytest.raises(ConfigError, match="timesteps"):
        tawq_core.create("dataset", "shd", data_dir=str(tmp_path), timesteps=0)


@pytest.mark.parametrize(("name", "options"), [
    ("cifar10-dvs", {"train_fraction": 1.0}), ("cifar10-dvs", {"size": 256}), ("dvs-gesture", {"size": [64]}),
    ("nmnist", {"first_saccade_only": "yes"}),
])
def test_event_options_are_validated(tmp_path, name, options):
    with pytest.raises(ConfigError, match=name):
        tawq_core.create("dataset", name, data_dir=str(tmp_path), **options)


def test_shd_corrupt_or_incomplete_h5_names_the_file(tmp_path):
    _shd_tree(tmp_path)
    test_file = tmp_path / "SHD" / "shd_test.h5"
    test_file.write_bytes(b"\x89HDF\r\n truncated")
    with pytest.raises(DatasetNotFound, match=r"cannot read .*shd_test\.h5"):
        tawq_core.create("dataset", "shd", data_dir=str(tmp_path))
    import h5py

    with h5py.File(test_file, "w") as handle:
        handle["labels"] = np.zeros(1, dtype=np.uint16)
    with pytest.raises(DatasetNotFound, match=r"shd_test\.h5.*spikes/times"):
        tawq_core.create("dataset", "shd", data_dir=str(tmp_path))


def _nmnist_tree(root):
    for split in ("Train", "Test"):
        for digit in range(10):
            write_nmnist_bin(root / "NMNIST" / split / str(digit) / "00001.bin",
                             [(3, 5, 1, 0), (33, 33, 0, 1000 * digit), (1, 2, 1, 20_000)])


def test_nmnist_reads_bin_events_into_frames(tmp_path):
    _nmnist_tree(tmp_path)
    splits = tawq_core.create("dataset", "nmnist", data_dir=str(tmp_path), timesteps=2)
    assert splits.sample_shape == (2, 34, 34) and splits.timesteps == 2 and splits.num_classes == 10
    assert (len(splits.train), len(splits.test)) == (10, 10)
    x, label = splits.train[7]
    assert x.shape == (2, 2, 34, 34) and label == 7
    assert x[0, 1, 5, 3] == 1 and x[0, 0, 33, 33] == 1  # [T, polarity, y, x]; 7 ms is in the first half
    assert x.sum() == 2  # the event at the last timestamp lies outside tonic's half-open last bin
    assert sorted(splits.test[i][1] for i in range(10)) == list(range(10))


def test_nmnist_truncated_bin_names_the_file_before_training(tmp_path):
    _nmnist_tree(tmp_path)
    broken = tmp_path / "NMNIST" / "Train" / "4" / "00001.bin"
    broken.write_bytes(broken.read_bytes()[:-3])  # a partial 5-byte event: found by its size, nothing decoded
    with pytest.raises(DatasetNotFound, match=r"cannot read .*Train/4/00001\.bin \(12 bytes is not a whole"):
        tawq_core.create("dataset", "nmnist", data_dir=str(tmp_path), timesteps=2)


def test_nmnist_incomplete_tree_names_the_missing_folder(tmp_path):
    _nmnist_tree(tmp_path)
    (tmp_path / "NMNIST" / "Test" / "6" / "00001.bin").unlink()
    with pytest.raises(DatasetNotFound, match=r"NMNIST/Test/6 is missing") as info:
        tawq_core.create("dataset", "nmnist", data_dir=str(tmp_path))
    assert "garrickorchard.com" in str(info.value) and "download=True" in str(info.value)


def test_dvs_gesture_reads_npy_and_downsamples(tmp_path):
    for split, user in (("Train", "user01_fluorescent"), ("Test", "user24_led")):
        for label in range(11):
            write_gesture_npy(tmp_path / "DVSGesture" / f"ibmGesture{split}" / user / f"{label}.npy",
                              [(127, 0, 1, 0), (5, 6, 0, 10), (64, 127, 1, 15), (0, 0, 1, 20)])
    splits = tawq_core.create("dataset", "dvs-gesture", data_dir=str(tmp_path), timesteps=2, size=32)
    assert splits.sample_shape == (2, 32, 32) and splits.num_classes == 11
    assert (len(splits.train), len(splits.test)) == (11, 11)
    x, label = splits.train[0]
    assert x.shape == (2, 2, 32, 32) and 0 <= label < 11
    assert x[0, 1, 0, 31] == 1  # x 127 // 4 = 31 (128 -> 32), first half of 20 ms
    assert x[1, 0, 1, 1] == 1 and x[1, 1, 31, 16] == 1  # (5, 6) -> (1, 1) and (64, 127) -> (16, 31)
    assert x.sum() == 3


def test_cifar10_dvs_reads_aedat4_with_a_fixed_per_class_split(tmp_path):
    pytest.importorskip("aedat")
    for name in CIFAR10_CLASSES:
        for k in range(4):
            write_aedat4(tmp_path / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat4",
                         [(0, 127, 5, 1), (10, 3, 4, 0), (20, 0, 0, 1)])
    splits = tawq_core.create("dataset", "cifar10-dvs", data_dir=str(tmp_path), timesteps=2, size=64,
                              train_fraction=0.75)
    assert (len(splits.train), len(splits.test)) == (30, 10)
    assert sorted(splits.test[i][1] for i in range(10)) == list(range(10))
    frames = splits.test.dataset
    assert all(frames.reader.data[i].endswith("_3.aedat4") for i in splits.test.indices)
    x, _ = splits.train[0]
    assert x.shape == (2, 2, 64, 64) and x[0, 1, 2, 63] == 1 and x[1, 0, 2, 1] == 1 and x.sum() == 2


def test_cifar10_dvs_corrupt_file_names_it(tmp_path):
    pytest.importorskip("aedat")
    for name in CIFAR10_CLASSES:
        write_aedat4(tmp_path / "CIFAR10DVS" / name / "a.aedat4", [(0, 1, 1, 1), (5, 2, 2, 0)])
        write_aedat4(tmp_path / "CIFAR10DVS" / name / "b.aedat4", [(0, 1, 1, 1), (5, 2, 2, 0)])
    bad = tmp_path / "CIFAR10DVS" / "cat" / "b.aedat4"
    bad.write_bytes(bad.read_bytes()[:40])
    splits = tawq_core.create("dataset", "cifar10-dvs", data_dir=str(tmp_path), train_fraction=0.5)
    index = next(i for i in range(len(splits.test)) if splits.test.dataset.reader.data[splits.test.indices[i]]
                 == str(bad))
    with pytest.raises(DatasetNotFound, match=r"cannot read .*cat/b\.aedat4"):
        splits.test[index]


@pytest.mark.parametrize("name", ["shd", "nmnist", "dvs-gesture", "cifar10-dvs"])
def test_missing_data_never_downloads_without_asking(tmp_path, name):
    if name == "cifar10-dvs":
        pytest.importorskip("aedat")
    with pytest.raises(DatasetNotFound) as info:
        tawq_core.create("dataset", name, data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message and "https://" in message and "download=True" in message
    assert "\n" not in message


def test_failed_download_is_a_dataset_error_not_a_urlerror(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"downloading with tonic into .*SHD failed \(URLError"):
        tawq_core.create("dataset", "shd", data_dir=str(tmp_path), download=True)
