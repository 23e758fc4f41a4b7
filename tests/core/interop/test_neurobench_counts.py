"""NeuroBench-convention counting by tawq's code (no neurobench needed): hand-checked counts, the bit-aware
footprint and sparsity, the per-timestep weights of temporal quantizers, refusals, and the bench section."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tawq_core
from tawq_core.bench import load_preset, run_bench
from tawq_core.interop.neurobench_counts import (
    NeuroBenchCounter,
    call_ops,
    connection_sparsity,
    footprint_bytes,
    neurobench_metrics,
)
from tawq_core.measure.sops import count_ops
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.errors import ConfigError, ShapeError

NEUROBENCH_KEYS = {"Footprint", "ConnectionSparsity", "ActivationSparsity", "SynapticOperations"}


def test_linear_call_counts_by_hand():
    layer = nn.Linear(3, 2, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]]))  # non-zero per input: 1, 0, 2
    spikes = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 1.0, 1.0]])
    ops = call_ops(layer, spikes, batch=3)
    assert (ops.effective, ops.dense, ops.spiking) == (1 + 2 + 3, 3 * 3 * 2, True)  # bias never counted
    analog = call_ops(layer, spikes * 0.5, batch=3)
    assert (analog.effective, analog.spiking) == (6, False)


def test_conv_dense_excludes_zero_padding():
    conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
    ops = call_ops(conv, torch.ones(2, 1, 5), batch=2)
    assert ops.dense == 2 * (3 * 5 - 2)  # the two border outputs see 2 of 3 taps


def _toy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_temporal_weights_are_counted_per_timestep():
    model = _toy()
    tawq_core.quantize(model, "tawq", timesteps=3)
    layer = dict(quantized_layers(model))["1"]
    weights = layer.effective_weight().detach()  # [T, out, in]
    assert not torch.equal(weights[0] != 0, weights[1] != 0)  # the test needs weights that change over time
    x = (torch.rand(3, 4, 8) > 0.5).float()  # [T, B, in] spikes
    by_hand = sum(float(((x[t] != 0).float() @ (weights[t] != 0).float().T).sum()) for t in range(3))
    assert call_ops(layer, x, batch=4).effective == by_hand
    assert call_ops(layer, x.flatten(0, 1), batch=4).effective == by_hand  # the flattened [T*B, in] layout too
    with pytest.raises(ShapeError, match="one weight set per timestep"):
        call_ops(layer, x[0], batch=4)  # one timestep alone: which weight set is not known
    zeros = sum(float((weights[t] == 0).sum()) for t in range(3)) / 3
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert connection_sparsity(model) == pytest.approx(zeros / total, rel=1e-12)


def test_footprint_counts_packed_weights_and_every_buffer():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    plain = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert footprint_bytes(model) == plain  # NeuroBench's definition; num_batches_tracked is int64
    tawq_core.quantize(model, "ternary", timesteps=2)
    (name, layer), = quantized_layers(model)
    packed = layer.pack().nbytes
    assert footprint_bytes(model) == plain - layer.weight.numel() * 4 + packed < plain


def test_counter_matches_the_exact_op_counter_where_conventions_agree():
    """No stem role, no ±1 inputs, no padding here: NeuroBench's effective pairs are tawq's exact pairs."""
    model = _toy()
    tawq_core.quantize(model, "tawq", timesteps=3)
    batches = [torch.rand(3, 5, 6) for _ in range(2)]
    metrics = neurobench_metrics(model, batches)
    assert set(metrics) == NEUROBENCH_KEYS
    exact = count_ops(model, batches)
    synops = metrics["SynapticOperations"]
    assert synops["Effective_ACs"] == pytest.approx(exact.exact_ac)
    assert synops["Effective_MACs"] == pytest.approx(exact.exact_mac)
    assert synops["Dense"] == 3 * (6 * 8 + 8 * 8 + 8 * 3)


def test_layers_tawq_cannot_count_are_refused():
    with pytest.raises(ConfigError, match="Conv3d"):
        NeuroBenchCounter(nn.Sequential(nn.Conv3d(1, 1, 1)))
    with pytest.raises(ConfigError, match="LSTM"):
        connection_sparsity(nn.Sequential(nn.LSTM(2, 2)))
    with pytest.raises(ShapeError, match="time-major"):
        neurobench_metrics(_toy(), [torch.rand(6)])


class _WithConv3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.unused = _toy(), nn.Conv3d(1, 1, 1)  # never called, but NeuroBench counts its weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_the_bench_reports_what_it_cannot_count_as_unavailable():
    model = _WithConv3d()
    metrics = neurobench_metrics(model, [torch.rand(2, 3, 6)])
    assert metrics["ConnectionSparsity"] is None and metrics["SynapticOperations"] is None
    assert "Conv3d" in metrics["unavailable"] and 0 <= metrics["ActivationSparsity"] <= 1
    assert metrics["Footprint"] == footprint_bytes(model)


TINY = """
name = "nb"
dataset = "digits"
model = "mlp"
timesteps = 2
quantizers = ["ptq8"]
backends = ["cpu"]
seeds = [0]
[model_options]
hidden = [16]
[train]
epochs = 1
batch_size = 64
[measure]
batch_size = 32
warmup = 1
repeats = 2
energy_seconds = 0.05
ops_batches = 1
calibration_batches = 1
"""


def test_bench_records_and_shows_the_neurobench_section(tmp_path, one_thread, quick_collections):
    preset = tmp_path / "nb.toml"
    preset.write_text(TINY)
    result = run_bench(load_preset(str(preset)), tmp_path / "out")
    records = json.loads((result.run_dir / "results.json").read_text())["records"]
    assert records and all(set(r["neurobench"]) == NEUROBENCH_KEYS for r in records)
    for r in records:
        assert set(r["neurobench"]["SynapticOperations"]) == {"Effective_MACs", "Effective_ACs", "Dense"}
        int_buffers = 8 * 1  # the mlp's one BatchNorm1d: num_batches_tracked, int64
        assert r["neurobench"]["Footprint"] == r["storage"]["weight_bytes"] + int_buffers
    matrix = (result.run_dir / "matrix.md").read_text()
    assert "NeuroBench Footprint KiB" in matrix and "NeuroBench Effective ACs / MACs per sample" in matrix
