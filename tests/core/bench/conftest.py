"""A tiny bench preset (digits, 16-unit spiking MLP, one epoch) shared by the bench tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = """
name = "tiny"
dataset = "digits"
model = "mlp"
timesteps = 2
quantizers = ["tawq", "ptq8"]
backends = ["cpu"]
seeds = [0]

[model_options]
hidden = [16, 16]

[train]
epochs = 1
batch_size = 64

[qat]
epochs = 1

[measure]
batch_size = 32
warmup = 1
repeats = 3
energy_seconds = 0.05
ops_batches = 1
calibration_batches = 2
"""


@pytest.fixture
def tiny_preset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(autouse=True)
def _single_thread(one_thread, quick_collections):
    """Every test here runs on one torch thread, and its bench's collections skip what was alive before it
    (the shared `one_thread` and `quick_collections` fixtures of tests/conftest.py)."""
