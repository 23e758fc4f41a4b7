"""The deploy and measure stages on a tiny model: forms, latency at batch 1 and N, resident bytes, kernels."""

from __future__ import annotations

import copy

import pytest
import torch

import tawq_core
from tawq_core.pipeline import DEPLOYED, SPIKE_DRIVEN, TORCH_DENSE, MeasureSpec, deployed_forms, measure_form
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.registry import create


def test_measure_form_times_each_form_at_batch_1_and_n(one_thread):
    torch.manual_seed(0)
    fp32 = create("model", "mlp", num_classes=3, sample_shape=(1, 12), hidden=(16, 16)).eval()
    quantized = copy.deepcopy(fp32)
    tawq_core.quantize(quantized, "ternary", 2)
    backend = create("backend", "cpu")
    x = (torch.rand(2, 5, 1, 12) * 3).round()
    forms = deployed_forms(fp32, backend) + deployed_forms(quantized.eval(), backend)
    assert [f.name for f in forms] == [TORCH_DENSE, SPIKE_DRIVEN, DEPLOYED]
    measured = [measure_form(f, x, MeasureSpec(warmup=0, repeats=2), backend) for f in forms]
    for m in measured:
        assert m.batch == 5 and len(m.latency.samples) == 2 and len(m.latency_b1.samples) == 2
        assert m.latency.median_s > 0 and m.energy is None and m.resident_bytes > 0 and m.kernels
    assert measured[2].resident_bytes < measured[0].resident_bytes  # packed weights only
    assert any(k.startswith("cpu.") for k in measured[2].kernels.values())


@pytest.mark.parametrize("fields", [{"warmup": -1}, {"repeats": 0}, {"energy_seconds": 0}])
def test_measure_spec_refuses_bad_fields(fields):
    with pytest.raises(ConfigError):
        MeasureSpec(**fields)
