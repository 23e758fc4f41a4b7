"""Matrix rows time the deployed form: both fp32 forms, deployed quantized rows, resident bytes, kernels."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

import tawq_core
from tawq_core.bench import load_preset
from tawq_core.bench.aggregate import aggregate
from tawq_core.bench.cells import measure
from tawq_core.bench.notes import notes
from tawq_core.bench.render import markdown_table
from tawq_core.pipeline.deployed import DEPLOYED, SPIKE_DRIVEN, TORCH_DENSE, deployed_forms
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.quantizer import QuantMode
from tawq_core.plugin_api.registry import create


@pytest.fixture
def setup(tiny_preset):
    cfg = load_preset(str(tiny_preset))
    splits = create("dataset", "digits")
    torch.manual_seed(0)
    fp32 = create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=(16, 16)).eval()
    quantized = copy.deepcopy(fp32)
    tawq_core.quantize(quantized, "tawq", cfg.timesteps)
    return cfg, splits, fp32, quantized.eval(), create("backend", "cpu")


def _record(cfg, splits, model, quantizer, backend):
    mode = "none" if quantizer == "fp32" else "qat"
    return {"quantizer": quantizer, "seed": 0, "backend": "cpu", "status": "ok", "top1": 50.0, "mode": mode,
            **measure(model, cfg, splits, backend)}


def test_forms_of_fp32_and_quantized_models(setup):
    _, _, fp32, quantized, backend = setup
    assert [f.name for f in deployed_forms(fp32, backend)] == [TORCH_DENSE, SPIKE_DRIVEN]
    (deployed,) = deployed_forms(quantized, backend)
    assert deployed.name == DEPLOYED and not any(True for _ in tawq_core.quantized_layers(deployed.net))


def test_backend_without_deployed_kernels_times_the_eval_model_and_says_so(setup, monkeypatch):
    _, _, _, quantized, backend = setup

    def unavailable(model, backend):
        raise ConfigError("no deployed kernels here")

    monkeypatch.setattr(sys.modules["tawq_core.deploy"], "deploy", unavailable)  # the package, not the function
    (form,) = deployed_forms(quantized, backend)
    assert form.name.startswith("fake-quant eval") and form.note == "no deployed kernels here"


def test_measured_cells_give_both_fp32_rows_resident_bytes_and_kernels(setup):
    cfg, splits, fp32, quantized, backend = setup
    records = [_record(cfg, splits, fp32, "fp32", backend), _record(cfg, splits, quantized, "tawq", backend)]
    dense, tawq = records
    assert dense["deployed"]["form"] == TORCH_DENSE and set(dense["variants"]) == {SPIKE_DRIVEN}
    spike = dense["variants"][SPIKE_DRIVEN]
    for r in (dense, spike, tawq):
        assert r["latency_b1"]["batch_size"] == 1 and r["latency"]["batch_size"] == cfg.measure.batch_size
        assert r["latency_b1"]["batch_median_s"] > 0 and r["deployed"]["resident_bytes"] > 0
    # packed planes: far below the fp32 weights (stem and head stay fp32 in both)
    assert tawq["deployed"]["resident_bytes"] < dense["deployed"]["resident_bytes"]
    for r in (tawq, spike):  # deployed layers name tawq's kernels; the stem and head run torch's dense op
        assert {k.split(".")[0] for k in r["deployed"]["kernels"].values()} <= {"cpu", "dense", "torch dense fp32"}
        assert any(k.startswith("cpu.") for k in r["deployed"]["kernels"].values())
    for agree in (tawq["deployed"]["agreement"], spike["deployed"]["agreement"]):
        assert agree["predictions_equal"] == agree["samples"] and agree["max_rel_diff"] < 1e-4

    rows = aggregate(records, ["fp32", "tawq"], ["cpu"])
    assert [(r["quantizer"], r["form"]) for r in rows] == [("fp32", TORCH_DENSE), ("fp32", SPIKE_DRIVEN),
                                                           ("tawq", DEPLOYED)]
    assert rows[1]["top1_mean"] == 50.0 and rows[1]["resident_bytes_mean"] == spike["deployed"]["resident_bytes"]
    table = markdown_table(rows)
    assert "| fp32 (torch dense) |" in table and "| fp32 (spike-driven) |" in table and "| tawq (qat) |" in table
    assert "resident weights KiB" in table and "latency batch 1 ms (median / p90)" in table
    lines = notes(cfg, records, {"fp32": QuantMode.NONE, "tawq": QuantMode.QAT})
    kernels = [line for line in lines if line.startswith("kernels of ")]
    assert [line.split(":")[0] for line in kernels] == ["kernels of fp32 (torch dense)/cpu",
                                                        "kernels of fp32 (spike-driven)/cpu", "kernels of tawq/cpu"]
    assert "torch dense fp32" in kernels[0] and "predictions equal" in kernels[2]
