"""Fixtures shared by the robustness tests: the tiny preset and three real bench runs made side by side.

The uninterrupted reference run (with the deliberately broken plugin distribution on its path), a run
stopped by SIGINT and one stopped by SIGKILL after their first finished cell, all started at once: each
uses one thread, so on 2 cores they cost about as much wall time as one run after another would not.
"""

from __future__ import annotations

import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from robustness_helpers import TINY_PRESET, BenchRun, bench, run_cli


@pytest.fixture(scope="session")
def tiny_preset_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "tiny.toml"
    path.write_text(TINY_PRESET)
    return path


@dataclass
class BenchRuns:
    reference: BenchRun  # uninterrupted, broken third-party plugins installed
    sigint: BenchRun  # Ctrl-C after the first finished cell
    sigkill: BenchRun  # killed after the first finished cell


@pytest.fixture(scope="session")
def bench_runs(tiny_preset_file, broken_plugin_path, tmp_path_factory) -> BenchRuns:
    root = tmp_path_factory.mktemp("bench-runs")
    with ThreadPoolExecutor(max_workers=3) as pool:
        reference = pool.submit(bench, tiny_preset_file, root / "reference", quiet=False,
                                extra_path=[broken_plugin_path])
        sigint = pool.submit(bench, tiny_preset_file, root / "sigint", interrupt=signal.SIGINT)
        sigkill = pool.submit(bench, tiny_preset_file, root / "sigkill", interrupt=signal.SIGKILL)
        return BenchRuns(reference.result(), sigint.result(), sigkill.result())


#: `tawq train` of a tawq-quantized MLP on digits: small, but every part of QAT (calcium dynamics, per-timestep
#: weights, AdamW, label smoothing, the warm-up/cosine schedule) takes part.
TRAIN_SEEDED = ("train", "--model", "mlp", "--model-option", "hidden=[32,32]", "--dataset", "digits",
                "--quantizer", "tawq", "--timesteps", "2", "--epochs", "2", "--batch-size", "64", "--lr", "0.01",
                "--seed", "3", "--no-progress")


@dataclass
class TrainReplicate:
    out: Path
    train: subprocess.CompletedProcess
    export: subprocess.CompletedProcess | None


def _train_and_export(out: Path, extra_path: list[Path]) -> TrainReplicate:
    trained = run_cli(*TRAIN_SEEDED, "--out", str(out), extra_path=extra_path)
    if trained.returncode != 0:
        return TrainReplicate(out, trained, None)
    exported = run_cli("export", str(out), "--format", "tawq", "--out", str(out / "model.tawq"), extra_path=extra_path)
    return TrainReplicate(out, trained, exported)


@pytest.fixture(scope="session")
def train_replicates(broken_plugin_path, tmp_path_factory) -> tuple[TrainReplicate, TrainReplicate]:
    """The same `tawq train` + `tawq export --format tawq`, twice, side by side; the second with the broken
    third-party plugin distribution installed (which must change nothing)."""
    root = tmp_path_factory.mktemp("train-replicates")
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain = pool.submit(_train_and_export, root / "plain", [])
        broken = pool.submit(_train_and_export, root / "with-broken-plugins", [broken_plugin_path])
        return plain.result(), broken.result()


@pytest.fixture(autouse=True)
def _single_thread(one_thread, quick_collections):
    """Every test here runs on one torch thread, and the benches it runs in-process collect only what they
    dropped (the shared `one_thread` and `quick_collections` fixtures of tests/conftest.py)."""
