"""ONNX: unrolled, materialized, dynamic batch; onnxruntime matches torch within 1e-5 on fresh inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import tawq_core
from tawq_core import Neuron
from tawq_core.export import ExportError
from tawq_core.nn.quantization import quantized_layers


def _run(path, *xs: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [session.run(None, {"input": x.numpy()})[0] for x in xs]


def _constants(proto: onnx.ModelProto) -> list[np.ndarray]:
    found = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    for node in proto.graph.node:
        if node.op_type == "Constant":
            found += [numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
    return found


@pytest.mark.parametrize("name", ["mlp", "sew-resnet", "spikingformer"])
def test_onnxruntime_matches_torch(name, tiny_model, make_inputs, tmp_path):
    model, _ = tiny_model(name)
    report = tawq_core.export(model, "onnx", tmp_path / "m.onnx", batch_size=2)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[1]
    assert batch_dim.dim_param == "batch" and report.checked_batches == [2, 3]
    xs = [make_inputs(model, batch, seed=batch) for batch in (1, 6)]  # batch sizes the export never saw
    for x, got in zip(xs, _run(tmp_path / "m.onnx", *xs), strict=True):
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.ptp(got, axis=0).max() > 1e-3  # spikes flow: the outputs depend on the input


def test_weights_are_materialized_and_latent_weights_absent(mlp, tmp_path):
    model, _ = mlp
    tawq_core.export(model, "onnx", tmp_path / "m.onnx")
    constants = _constants(onnx.load(str(tmp_path / "m.onnx")))
    (_, layer), = quantized_layers(model)
    effective = layer.effective_weight().detach().numpy()  # [T, out, in]
    assert effective.shape[0] == 4 and not np.array_equal(effective[0], effective[1])
    stacked = [c for c in constants if c.shape in (effective.shape, effective.transpose(0, 2, 1).shape)]
    assert any(np.array_equal(c, effective) or np.array_equal(c, effective.transpose(0, 2, 1)) for c in stacked)
    latent = layer.weight.detach().numpy()
    assert not any(c.size == latent.size and np.allclose(c.reshape(-1), latent.reshape(-1)) for c in constants)
    assert not any(n.op_type.startswith("Python") for n in onnx.load(str(tmp_path / "m.onnx")).graph.node)


def test_static_quantizer_exports(tiny_model, make_inputs, tmp_path):
    model, _ = tiny_model("mlp", quantizer="ptq8")
    tawq_core.export(model, "onnx", tmp_path / "p.onnx")
    x = make_inputs(model, 3)
    with torch.no_grad():
        np.testing.assert_allclose(_run(tmp_path / "p.onnx", x)[0], model(x).numpy(), rtol=0, atol=1e-5)


class _FusedFire(torch.autograd.Function):
    """A fused neuron kernel as training code writes them: the T-step loop inside an autograd Function, spikes
    written in place. The TorchScript tracer inlines the Function and loses the in-place writes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        spikes, v = torch.empty_like(x), torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            v = v + x[t]
            fired = v >= 0.5
            spikes[t] = fired
            v = torch.where(fired, 0.0, v)
        return spikes

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class FusedNeuron(Neuron):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FusedFire.apply(x)


def test_untraceable_neuron_is_caught_not_written(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), FusedNeuron(), torch.nn.Linear(8, 2)).eval()
    x = 2 * torch.randn(4, 2, 5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ExportError, match="onnxruntime output differs"):
        tawq_core.export(model, "onnx", tmp_path / "bad.onnx", example=x)
    assert not (tmp_path / "bad.onnx").exists()


def test_export_needs_timesteps_and_shape(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(5, 2))
    with pytest.raises(tawq_core.ConfigError, match="timesteps"):
        tawq_core.export(model, "onnx", tmp_path / "x.onnx")
    with pytest.raises(tawq_core.ConfigError, match="sample_shape"):
        tawq_core.export(model, "onnx", tmp_path / "x.onnx", timesteps=4)
    with pytest.raises(tawq_core.ConfigError, match="unknown export format"):
        tawq_core.export(model, "tflite", tmp_path / "x.onnx", timesteps=4)
