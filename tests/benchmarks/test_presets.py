"""Every shipped preset runs to the end, so none can fail after hours of training.

Each preset runs on small stand-in files written in its dataset's real on-disk layout (the writers of
tests/plugins/datasets), on the cpu backend, with width, depth, image size, epochs, the training set and
the timing repeats shrunk. What decides whether the steps after training work is kept as shipped: the
timesteps T, the measure batch, the quantizers and the code path (dataset reader, model, quantize,
calibrate, op counting, energy, storage, measurement, report).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tawq_core.bench import load_preset, preset_names, run_bench
from tawq_core.bench.config import BenchConfig

pytestmark = pytest.mark.slow  # every shipped preset end to end, at its shipped measure batch and T

WRITERS_FILE = Path(__file__).resolve().parents[1] / "plugins" / "datasets" / "dataset_writers.py"


def _writers() -> Any:
    """tests/plugins/datasets/dataset_writers.py (not a package: loaded by path unless pytest already did)."""
    if "dataset_writers" not in sys.modules:
        spec = importlib.util.spec_from_file_location("dataset_writers", WRITERS_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["dataset_writers"] = module
    return sys.modules["dataset_writers"]


#: samples per stand-in training set: whole training batches (training drops a last partial one)
TRAIN_SAMPLES = 16
TRAIN_BATCH = 8


def _shd(root: Path, test_samples: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)

    def recordings(n: int) -> list[tuple[list[float], list[int], int]]:
        return [(sorted(rng.uniform(0, 1, 30).tolist()), rng.integers(0, 700, 30).tolist(), i % 20)
                for i in range(n)]

    _writers().write_shd(root / "SHD" / "shd_train.h5", recordings(TRAIN_SAMPLES))
    _writers().write_shd(root / "SHD" / "shd_test.h5", recordings(test_samples))
    return {}


def _cifar100(root: Path, test_samples: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    for name, n in (("train.bin", TRAIN_SAMPLES), ("test.bin", test_samples)):
        labels = [(i % 20, i % 100) for i in range(n)]
        _writers().write_cifar_bin(root / "cifar-100-binary" / name, labels,
                                   rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
    return {"size": 16}


def _imagenet(root: Path, test_samples: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    classes = ["n01440764", "n01443537", "n01484850", "n01491361"]
    for split, n in (("train", TRAIN_SAMPLES), ("val", test_samples)):
        for i in range(n):
            wnid = classes[i % len(classes)]
            _writers().write_image(root / "imagenet" / split / wnid / f"{wnid}_{i}.JPEG",
                                   rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return {"size": 16}


def _cifar10_dvs(root: Path, test_samples: int) -> dict[str, Any]:
    from tawq_plugins.datasets.neuromorphic import CIFAR10_CLASSES

    pytest.importorskip("aedat")
    rng = np.random.default_rng(0)
    per_class = max(TRAIN_SAMPLES, 2 * test_samples) // len(CIFAR10_CLASSES) + 1
    for name in CIFAR10_CLASSES:
        for k in range(per_class):
            events = [(int(t), int(x), int(y), int(p)) for t, x, y, p in
                      zip(np.sort(rng.integers(0, 100_000, 40)), rng.integers(0, 128, 40), rng.integers(0, 128, 40),
                          rng.integers(0, 2, 40), strict=True)]
            _writers().write_aedat4(root / "CIFAR10DVS" / name / f"cifar10_{name}_{k}.aedat4", events)
    return {"size": 16, "train_fraction": 0.5}  # half the files test, so the test split holds a measure batch


def _mnist1d(root: Path, test_samples: int) -> dict[str, Any]:
    _writers().write_mnist1d_cache(root)
    return {}


def _digits(root: Path, test_samples: int) -> dict[str, Any]:
    return {}  # shipped with scikit-learn


#: dataset -> writes stand-in files under the data dir, returns dataset_options to change
STAND_INS: dict[str, Callable[[Path, int], dict[str, Any]]] = {
    "shd": _shd, "cifar100": _cifar100, "imagenet": _imagenet, "cifar10-dvs": _cifar10_dvs,
    "mnist1d": _mnist1d, "digits": _digits,
}
#: model -> options small enough for a test (same blocks, fewer and narrower)
SMALL_MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": [16, 16]},
    "sew-resnet": {"layers": [1, 1], "width": 4},
    "spikingformer": {"embed_dim": 8, "depth": 1, "heads": 2},
    "qkformer": {"embed_dim": 16, "depth": 3, "heads": 2},
}


def small(cfg: BenchConfig, data_dir: Path) -> BenchConfig:
    """`cfg` on stand-in data, shrunk where shrinking cannot hide a failure after training."""
    assert cfg.dataset in STAND_INS, f"preset {cfg.name}: add a stand-in writer for dataset {cfg.dataset!r}"
    assert cfg.model in SMALL_MODELS, f"preset {cfg.name}: add small options for model {cfg.model!r}"
    dataset_options = {**cfg.dataset_options, **STAND_INS[cfg.dataset](data_dir, cfg.measure.batch_size)}
    file_based = cfg.dataset not in ("digits", "mnist1d")

    def recipe(section: dict[str, Any]) -> dict[str, Any]:
        return {**section, "epochs": 1, "num_workers": 0, "warmup_epochs": min(section.get("warmup_epochs", 1), 1)}

    train = recipe(cfg.train)
    if file_based:  # the stand-in training set holds two batches (QAT inherits the batch size)
        train["batch_size"] = TRAIN_BATCH
    measure = dataclasses.replace(cfg.measure, warmup=0, repeats=1, energy_seconds=0.01, ops_batches=1,
                                  calibration_batches=1)
    return dataclasses.replace(
        cfg, backends=("cpu",), seeds=cfg.seeds[:1], data_dir=str(data_dir), dataset_options=dataset_options,
        model_options={**cfg.model_options, **SMALL_MODELS[cfg.model]}, train=train, qat=recipe(cfg.qat),
        measure=measure, threads=1)


@pytest.fixture(autouse=True)
def _quick(quick_collections, one_thread):
    """Quick bench collections, and the torch thread count the presets' `threads = 1` changes restored after
    (the shared fixtures of tests/conftest.py)."""


@pytest.mark.parametrize("name", preset_names())
def test_preset_runs_to_the_end_on_stand_in_data(name, tmp_path):
    shipped = load_preset(name)
    cfg = small(shipped, tmp_path / "data")
    result = run_bench(cfg, tmp_path / "out")
    records = result.results["records"]
    assert result.results["complete"] is True
    assert [r["quantizer"] for r in records] == list(shipped.quantizers)
    assert result.results["config"]["timesteps"] == shipped.timesteps
    for record in records:
        assert record["status"] == "ok", record
        assert record["latency"]["batch_size"] == shipped.measure.batch_size  # the shipped measure batch
        assert record["ops"]["samples"] == shipped.measure.batch_size and record["top1"] is not None
    assert result.markdown.count("\n| ") >= len(records)
