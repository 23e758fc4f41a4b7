"""NIR: node types and parameters survive `nir.read`, quantization facts are lossless, the graph runs like the model."""

from __future__ import annotations

import copy
import json

import nir
import numpy as np
import pytest
import torch

import tawq_core
from tawq_core.export import ExportError, run_nir
from tawq_core.export.nir_export import DEFAULT_DT
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.quantizer import PackedWeight


def _bn_scale(bn: torch.nn.Module) -> torch.Tensor:
    return bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)


def test_mlp_nodes_parameters_and_quantization_metadata(mlp, tmp_path):
    model, _ = mlp
    report = tawq_core.export(model, "nir", tmp_path / "m.nir")
    graph = nir.read(str(tmp_path / "m.nir"))
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == report.nodes
    assert sorted(kinds.values()) == sorted(["Input", "Flatten", "Affine", "LIF", "Affine", "LIF", "Affine", "Output"])
    assert graph.metadata["tawq"]["readout"] == "mean-over-time" and int(graph.metadata["tawq"]["timesteps"]) == 4

    lif = graph.nodes["body.1"]
    assert lif.tau.shape == (24,)
    np.testing.assert_allclose(lif.tau, 2.0 * DEFAULT_DT)  # tau = 2 steps
    np.testing.assert_allclose(lif.r, 1.0)  # decay_input
    np.testing.assert_allclose(lif.v_threshold, 1.0)
    np.testing.assert_allclose(lif.v_leak, 0.0)
    np.testing.assert_allclose(lif.v_reset, 0.0)
    assert lif.metadata["tawq"]["fire"] == "v >= v_threshold"

    (name, layer), = quantized_layers(model)  # body.2.0 (the stem body.0.0 and the head stay fp32)
    node = graph.nodes[name]
    meta = node.metadata["tawq"]
    assert meta["quantizer"] == "tawq" and int(meta["timesteps"]) == 4 and bool(meta["temporal"])
    assert json.loads(meta["config"])["name"] == "tawq"
    scale = _bn_scale(model.body[2][1])
    effective = layer.effective_weight().detach()
    per_step = meta["weights_per_timestep"]
    assert per_step.shape == (4, *layer.weight.shape)
    np.testing.assert_allclose(per_step, (effective * scale[None, :, None]).numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(node.weight, per_step.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(meta["bn_scale"], scale.numpy(), rtol=1e-6)
    # the packed codes in the metadata unpack, with the quantizer, to exactly the layer's effective weights
    packed = PackedWeight("tawq", tuple(layer.weight.shape), 4,
                          {k: torch.from_numpy(v) for k, v in meta["packed"]["payload"].items()},
                          {k: torch.from_numpy(v) for k, v in meta["packed"]["scales"].items()})
    assert torch.equal(tawq_core.create("quantizer", "tawq").unpack(packed), effective)
    codebook = meta["packed"]["scales"]["codebook"]
    index = meta["pattern_index"]
    assert index.shape == tuple(layer.weight.shape) and index.max() < codebook.shape[0]
    np.testing.assert_array_equal(np.sign(codebook[index]).transpose(2, 0, 1), np.sign(effective.numpy()))
    assert float(meta["bits_per_weight"]) == pytest.approx(8 * packed.payload_bytes / layer.weight.numel())
    assert "tawq" not in graph.nodes["body.0.0"].metadata or "quantizer" not in graph.nodes["body.0.0"].metadata["tawq"]


@pytest.mark.parametrize("fixture", ["mlp", "sew"])
def test_graph_reproduces_the_model_and_needs_the_per_timestep_weights(fixture, request, make_inputs, tmp_path):
    model, _ = request.getfixturevalue(fixture)
    tawq_core.export(model, "nir", tmp_path / "m.nir")
    graph = nir.read(str(tmp_path / "m.nir"))
    x = make_inputs(model, 5, seed=3)
    with torch.no_grad():
        expected = model(x)
    got = run_nir(graph, x).mean(0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (expected.max(0).values - expected.min(0).values).max() > 1e-3  # spikes flow
    static = copy.deepcopy(graph)  # a reader that ignores the metadata convention runs the time-mean weights
    for node in static.nodes.values():
        node.metadata.get("tawq", {}).pop("weights_per_timestep", None)
    assert (run_nir(static, x).mean(0) - expected).abs().max() > 1e-3


def test_sew_resnet_residuals_pooling_and_folded_norms(sew, tmp_path):
    model, _ = sew
    tawq_core.export(model, "nir", tmp_path / "s.nir")
    graph = nir.read(str(tmp_path / "s.nir"))
    into = lambda n: sorted(src for src, dst in graph.edges if dst == n)  # noqa: E731
    assert into("blocks.1.conv1.0") == ["blocks.0.sn2", "stem.1"]  # SEW ADD = two edges into the next layer
    assert type(graph.nodes["stem.0.0"]).__name__ == "Conv2d" and "tawq" in graph.nodes["stem.0.0"].metadata
    assert "quantizer" not in graph.nodes["stem.0.0"].metadata["tawq"]  # the stem stays full precision
    assert graph.nodes["blocks.0.conv1.0"].metadata["tawq"]["folded_batchnorm"] == "blocks.0.conv1.1"
    pools = [n for n in graph.nodes.values() if type(n).__name__ == "AvgPool2d"]
    assert len(pools) == 1 and list(pools[0].kernel_size) == [4, 4]  # the global mean over the 4x4 tokens
    assert not any(type(n).__name__ == "BatchNorm" for n in graph.nodes.values())


def test_max_pooling_of_spikes_becomes_sum_pool_and_threshold(tiny_model, make_inputs, tmp_path):
    options = {"num_classes": 3, "sample_shape": (1, 66, 66), "layers": (1,), "width": 4}  # > 64 px: pooled stem
    model = tawq_core.create("model", "sew-resnet", **options)
    tawq_core.quantize(model, "tawq", 4)
    model.eval()
    tawq_core.export(model, "nir", tmp_path / "p.nir")
    graph = nir.read(str(tmp_path / "p.nir"))
    assert type(graph.nodes["stem.2.0.sum"]).__name__ == "SumPool2d"
    assert type(graph.nodes["stem.2.0"]).__name__ == "Threshold"
    assert ("stem.1", "stem.2.0.sum") in graph.edges and ("stem.2.0.sum", "stem.2.0") in graph.edges
    x = make_inputs(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(run_nir(graph, x).mean(0), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("neuron, options", [("if", {}), ("plif", {"tau": 3.0}), ("lif", {"v_reset": None})])
def test_other_neurons_and_soft_reset(neuron, options, tiny_model, make_inputs, tmp_path):
    model, _ = tiny_model("mlp", neuron=neuron, neuron_options=options)
    tawq_core.export(model, "nir", tmp_path / "n.nir")
    graph = nir.read(str(tmp_path / "n.nir"))
    node = graph.nodes["body.1"]
    if neuron == "if":
        assert type(node).__name__ == "IF"
        np.testing.assert_allclose(node.r, 1 / DEFAULT_DT)
    else:
        assert type(node).__name__ == "LIF"
        np.testing.assert_allclose(node.tau, options.get("tau", 2.0) * DEFAULT_DT, rtol=1e-5)
    assert node.metadata["tawq"]["reset"] == ("subtract" if "v_reset" in options else "hard")
    x = make_inputs(model, 3)
    with torch.no_grad():
        torch.testing.assert_close(run_nir(graph, x).mean(0), model(x), rtol=0, atol=1e-5)


def test_attention_is_refused_with_a_reason(tiny_model, tmp_path):
    model, _ = tiny_model("spikingformer")
    with pytest.raises(ExportError, match="NIR cannot express"):
        tawq_core.export(model, "nir", tmp_path / "t.nir")
