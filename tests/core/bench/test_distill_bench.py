"""Bench distillation: `[qat] distill = true` fine-tunes every QAT row against the fp32 model of its seed."""

from __future__ import annotations

import dataclasses

import pytest

from tawq_core.bench import load_preset, run_bench, runner
from tawq_core.bench.config import from_mapping
from tawq_core.nn.quantization import quantized_layers
from tawq_core.pipeline import produced as pipeline
from tawq_core.plugin_api.errors import ConfigError


def test_qat_rows_distill_from_the_fp32_model_of_the_same_seed(tiny_preset, tmp_path, monkeypatch):
    plain_cfg = load_preset(str(tiny_preset)).with_overrides(quantizers=["tawq"])
    cfg = dataclasses.replace(plain_cfg, qat={**plain_cfg.qat, "distill": True, "distill_weight": 0.7})
    calls = []
    real_train = pipeline.train

    def spy(model, splits, config, **kwargs):
        calls.append((config.distill, kwargs.get("teacher")))
        return real_train(model, splits, config, **kwargs)

    monkeypatch.setattr(pipeline, "train", spy)  # the one place any model is trained
    bench = runner.Runner(cfg, tmp_path)
    result = bench.run()
    fp32 = [r for r in result.results["records"] if r["quantizer"] == "fp32"]
    assert [distill for distill, _ in calls] == [False, True] and calls[0][1] is None
    teacher = calls[1][1]
    assert teacher is not None and not list(quantized_layers(teacher))  # the fp32 model itself
    assert fp32 and "distilled from the fp32 model of the same seed (KL weight 0.7" in result.markdown
    plain = run_bench(plain_cfg, tmp_path)
    assert "labels only (no distillation)" in plain.markdown


def test_distillation_is_refused_for_the_fp32_reference():
    with pytest.raises(ConfigError, match=r"train.distill: the fp32 reference has no teacher"):
        from_mapping({"dataset": "digits", "model": "mlp", "timesteps": 2, "quantizers": ["tawq"],
                      "train": {"distill": True}})
