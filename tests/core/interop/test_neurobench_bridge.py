"""tawq models in NeuroBench's own harness: tawq's metric classes agree with NeuroBench's on fp32 models, and
on quantized models differ only where NeuroBench reads the latent weight (docs/bench.md, NeuroBench)."""

from __future__ import annotations

import copy
import importlib
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Subset

import tawq_core
from tawq_core.interop.neurobench_counts import neurobench_metrics
from tawq_core.measure.sops import count_ops
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.data import encode_batch
from tawq_core.plugin_api.errors import ConfigError, MissingDependency, ShapeError
from tawq_core.plugin_api.registry import create

pytest.importorskip("neurobench")
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics import static as nb_static  # noqa: E402
from neurobench.metrics import workload as nb_workload  # noqa: E402

from tawq_core.interop import neurobench as tawq_nb  # noqa: E402

T = 4
CASES = {"mlp-digits": ("mlp", "digits", {"hidden": (16, 16)}),
         "sew-resnet-mnist1d": ("sew-resnet", "mnist1d", {"layers": (1, 1), "width": 4})}


def _metrics(module):
    return [[module.Footprint, module.ConnectionSparsity], [nb_workload.ActivationSparsity, module.SynapticOperations]]


NEUROBENCH = _metrics(type("nb", (), {**vars(nb_static), **vars(nb_workload)}))
TAWQ = _metrics(tawq_nb)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    """A tiny model of each kind, weights scaled up so every layer spikes, and 8 test samples."""
    model_name, dataset, options = CASES[request.param]
    splits = create("dataset", dataset)
    torch.manual_seed(0)
    model = create("model", model_name, num_classes=10, sample_shape=tuple(splits.sample_shape), **options)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    loader = DataLoader(Subset(splits.test, range(8)), batch_size=4)
    return model.eval(), splits, loader


def _flat(results):
    """One level: pytest.approx compares no nested dicts (SynapticOperations is one)."""
    flat = {k: v for k, v in results.items() if not isinstance(v, dict)}
    flat.update({k: v for inner in results.values() if isinstance(inner, dict) for k, v in inner.items()})
    return flat


def _run(model, loader, metrics, capsys):
    """Benchmark.run; NeuroBench turns a failing metric into a printed error and a 0: surface those."""
    results = Benchmark(tawq_nb.wrap(model, T), loader, [], [], metrics).run(quiet=True)
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Error running")]
    return results, errors


def _fresh_copy(model, quantizer=None):
    clone = copy.deepcopy(model)
    if quantizer:
        tawq_core.quantize(clone, quantizer, T)
    return clone.eval()


def test_fp32_models_agree_with_neurobench(case, capsys):
    model, splits, loader = case
    ours, errors = _run(model, loader, TAWQ, capsys)
    theirs, their_errors = _run(model, loader, NEUROBENCH, capsys)
    assert errors == their_errors == []
    assert _flat(ours) == pytest.approx(_flat(theirs), rel=1e-12)
    assert ours["SynapticOperations"]["Effective_ACs"] > 0 and ours["SynapticOperations"]["Effective_MACs"] > 0
    bench = neurobench_metrics(model, [encode_batch(x, splits.encoding, T) for x, _ in loader])  # the bench's path
    assert bench["ConnectionSparsity"] == pytest.approx(theirs["ConnectionSparsity"], abs=5e-5)  # NeuroBench rounds
    assert _flat({**bench, "ConnectionSparsity": 0}) == pytest.approx(
        _flat({**theirs, "ConnectionSparsity": 0}), rel=1e-12)


def _materialized(model, timestep=None):
    """`model` with each quantized layer's effective weights (of one timestep) as plain fp32 weights: what
    NeuroBench would need to see to count the quantized model right."""
    plain = copy.deepcopy(model)
    identity = create("quantizer", "fp32")
    for _, layer in quantized_layers(plain):
        w = layer.effective_weight().detach()
        with torch.no_grad():
            layer.weight.copy_(w if timestep is None else w[timestep])
        layer.quantizer = identity
    return plain


def _packing_saving(model):
    return sum(layer.weight.numel() * 4 - layer.pack().nbytes
               for _, layer in quantized_layers(model))


def test_static_quantizer_differs_only_by_the_latent_weight(case, capsys):
    model, _, loader = case
    ternary = _fresh_copy(model, "ternary")
    ours, errors = _run(ternary, loader, TAWQ, capsys)
    theirs, _ = _run(ternary, loader, NEUROBENCH, capsys)  # runs (the done-when), but counts the latent weight
    assert errors == []
    assert theirs["Footprint"] - ours["Footprint"] == _packing_saving(ternary) > 0
    assert ours["ActivationSparsity"] == theirs["ActivationSparsity"]
    assert ours["ConnectionSparsity"] > theirs["ConnectionSparsity"]
    effective, _ = _run(_materialized(ternary), loader, NEUROBENCH, capsys)  # the same forward, bit for bit
    assert ours["ConnectionSparsity"] == effective["ConnectionSparsity"]
    assert ours["ActivationSparsity"] == effective["ActivationSparsity"]
    assert ours["SynapticOperations"] == pytest.approx(effective["SynapticOperations"], rel=1e-12)


def test_temporal_quantizer_differs_only_by_the_latent_weight(case, capsys):
    model, splits, loader = case
    tawq = _fresh_copy(model, "tawq")
    ours, errors = _run(tawq, loader, TAWQ, capsys)
    theirs, _ = _run(tawq, loader, NEUROBENCH, capsys)
    assert errors == []
    assert theirs["Footprint"] - ours["Footprint"] == _packing_saving(tawq) > 0
    assert ours["ActivationSparsity"] == theirs["ActivationSparsity"]
    per_step = [_run(_materialized(tawq, t), loader, [[nb_static.ConnectionSparsity], []], capsys)[0]
                for t in range(T)]
    assert ours["ConnectionSparsity"] == pytest.approx(
        sum(r["ConnectionSparsity"] for r in per_step) / T, abs=1e-4)  # NeuroBench rounds each to 4 decimals
    fp32, _ = _run(model, loader, NEUROBENCH, capsys)
    assert ours["SynapticOperations"]["Dense"] == fp32["SynapticOperations"]["Dense"]
    exact = count_ops(tawq, [encode_batch(x, splits.encoding, T) for x, _ in loader])  # per-timestep weights
    assert ours["SynapticOperations"]["Effective_ACs"] == pytest.approx(exact.exact_ac, rel=1e-12)
    assert ours["SynapticOperations"]["Effective_MACs"] == pytest.approx(exact.exact_mac, rel=1e-12)


def test_wrap_layouts_and_refusals(case):
    model, splits, loader = case
    x, _ = next(iter(loader))
    wrapped = tawq_nb.wrap(model, T)
    expected = model(encode_batch(x, splits.encoding, T))
    assert torch.equal(wrapped(x), expected)  # static [B, *sample], direct-encoded
    assert torch.equal(wrapped(x.unsqueeze(1).expand(-1, T, *x.shape[1:])), expected)  # [B, T, ...]
    with pytest.raises(ShapeError, match="not"):
        wrapped(x[:, 0])
    with pytest.raises(ConfigError, match="T=4"):
        tawq_nb.wrap(_fresh_copy(model, "tawq"), T + 1)


def test_quantized_spikingjelly_model_runs_with_state_reset(capsys):
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.Conv2d(4, 4, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(4 * 8 * 8, 3, step_mode="m"))
    tawq_core.quantize(net, "tawq", T)
    x = torch.rand(4, T, 1, 8, 8) * 4
    loader = DataLoader(list(zip(x, torch.zeros(4, dtype=torch.long), strict=True)), batch_size=2)
    wrapped = tawq_nb.wrap(net, T)
    assert torch.equal(wrapped(x), wrapped(x))  # neuron state fresh for every batch
    assert sj is not None and any(isinstance(m, neuron.LIFNode) for m in
                                  (h["layer"] for h in wrapped.activation_layers()))
    results = Benchmark(wrapped, loader, [], [], TAWQ).run(quiet=True)
    assert "Error running" not in capsys.readouterr().out
    assert results["SynapticOperations"]["Effective_ACs"] > 0 and 0 < results["ActivationSparsity"] < 1


def test_missing_neurobench_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "neurobench.metrics.abstract", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "tawq_core.interop.neurobench")
    with pytest.raises(MissingDependency, match="pip install --no-deps neurobench==2.3.0") as info:
        importlib.import_module("tawq_core.interop.neurobench")
    assert "\n" not in str(info.value)
