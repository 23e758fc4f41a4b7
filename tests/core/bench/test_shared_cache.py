"""One cache for every run under --out: work two configurations share is done once, a plugin change
redoes exactly its rows, and a cache entry that is not what it claims to be is recomputed."""

from __future__ import annotations

import json

import pytest

from tawq_core.bench import fingerprint, load_preset, run_bench
from tawq_core.pipeline import produced as pipeline


@pytest.fixture
def training(monkeypatch):
    """Counts `train` calls (and still trains): which models were (re)trained in a run."""
    real, calls = pipeline.train, []

    def counted(model, splits, tc, **kwargs):
        calls.append(tc.epochs)
        return real(model, splits, tc, **kwargs)

    monkeypatch.setattr(pipeline, "train", counted)  # every model is trained there
    return calls


def test_adding_a_quantizer_reuses_the_trained_fp32_model_and_a_plugin_change_redoes_its_rows(
        tiny_preset, tmp_path, monkeypatch, training):
    out = tmp_path / "out"
    base = load_preset(str(tiny_preset)).with_overrides(quantizers=["ptq8"])
    first = run_bench(base, out)
    assert first.computed == ["0/fp32/cpu", "0/ptq8/cpu"] and len(training) == 1

    training.clear()
    more = base.with_overrides(quantizers=["ptq8", "binary"])
    assert more.run_id != base.run_id  # another run directory ...
    second = run_bench(more, out)  # ... the same cache
    assert second.cached == ["0/fp32/cpu", "0/ptq8/cpu"] and second.computed == ["0/binary/cpu"]
    assert len(training) == 1  # binary's QAT fine-tuning only: fp32 came from the cache
    records = second.results["records"]
    assert {r["run_id"] for r in records} == {more.run_id}  # cached cells are listed as this run's
    assert sorted(p.name for p in out.iterdir()) == sorted(["cache", base.run_id, more.run_id])

    training.clear()
    real = fingerprint.plugin
    monkeypatch.setattr(fingerprint, "plugin", lambda kind, name: {**real(kind, name), "version": "9.9"}
                        if (kind, name) == ("quantizer", "ptq8") else real(kind, name))
    upgraded = run_bench(more, out)
    assert upgraded.computed == ["0/ptq8/cpu"] and upgraded.cached == ["0/fp32/cpu", "0/binary/cpu"]
    assert training == []  # ptq8 is post-training: calibration of the cached fp32 model only


def test_invalid_cache_entries_are_recomputed_not_fatal(tiny_preset, tmp_path, training):
    cfg = load_preset(str(tiny_preset)).with_overrides(quantizers=["ptq8"])
    first = run_bench(cfg, tmp_path)
    cells = {r["quantizer"]: tmp_path / "cache" / "cells" / f"{r['cell_key']}.json" for r in first.results["records"]}
    (tmp_path / "cache" / "cells" / "stray.json").write_text("{}")
    cells["fp32"].write_text('{"kind": "cells", "key": "')  # torn by hand: bad JSON
    cells["ptq8"].write_text(cells["fp32"].with_name("stray.json").read_text())  # a foreign file under its name
    stages = sorted((tmp_path / "cache" / "stages").glob("*.json"))
    entry = json.loads(stages[0].read_text())
    del entry["record"]["top1"]  # a stage lacking a field
    stages[0].write_text(json.dumps(entry))
    training.clear()
    again = run_bench(cfg, tmp_path)
    assert again.computed == ["0/fp32/cpu", "0/ptq8/cpu"] and again.cached == []
    assert training == []  # the models were fine: nothing retrained
    assert [r["top1"] for r in again.results["records"]] == [r["top1"] for r in first.results["records"]]
    assert run_bench(cfg, tmp_path).cached == ["0/fp32/cpu", "0/ptq8/cpu"]  # rewritten, valid again
