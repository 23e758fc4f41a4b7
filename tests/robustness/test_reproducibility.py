"""Same seed, same CPU results: two `tawq train` runs give the same accuracy and, after `tawq export --format
tawq`, the same packed weights bit for bit. (What is and is not deterministic on GPU/NPU: docs/robustness.md.)"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # two real `tawq train` + `tawq export` processes, one with tawq-broken installed


def test_same_seed_gives_identical_accuracy_checkpoint_and_packed_weights(train_replicates):
    first, second = train_replicates
    for replicate in (first, second):
        assert replicate.train.returncode == 0, replicate.train.stderr
        assert replicate.export.returncode == 0, replicate.export.stderr
        assert "reloaded bit-exactly" in replicate.export.stdout
    summaries = [json.loads((r.out / "summary.json").read_text()) for r in (first, second)]
    assert summaries[0]["test_accuracy"] == summaries[1]["test_accuracy"] > 0.5
    assert [h["train_loss"] for h in summaries[0]["history"]] == [h["train_loss"] for h in summaries[1]["history"]]
    weights = [load_file(r.out / "model.safetensors") for r in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])
    packed = [(r.out / "model.tawq").read_bytes() for r in (first, second)]
    assert packed[0] == packed[1]
    assert (first.out / "model.safetensors").read_bytes() == (second.out / "model.safetensors").read_bytes()
