"""Quantized layers: one batched call equals the per-timestep loop; layouts, errors, cache, from_float."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tawq_core
from tawq_core import QuantConv1d, QuantConv2d, QuantLinear, ShapeError
from tawq_core.nn.time_layout import TimeLayout

T = 4


class Folded(nn.Module):
    """A model feeding its layer the flattened [T*B, ...] view (spikingjelly's SeqToANNContainer); its
    forward hook tells the layer B, as `quantize` sets up."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        layout = TimeLayout(layer.timesteps)
        layout.attach(layer, "layer")
        layout.install(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(0, 1))


def per_step_conv(layer, x, w):
    conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    outs = []
    for t in range(x.shape[0]):
        xt = x[t]
        padding = layer.padding
        if layer.padding_mode != "zeros":
            xt, padding = F.pad(xt, layer._reversed_padding_repeated_twice, mode=layer.padding_mode), 0
        outs.append(conv(xt, w[t], layer.bias, layer.stride, padding, layer.dilation, layer.groups))
    return torch.stack(outs)


CONVS = [
    (nn.Conv2d(4, 6, 3, padding=1), (2, 4, 6, 5)),
    (nn.Conv2d(4, 6, 3, stride=2, dilation=1, groups=2, bias=False), (3, 4, 7, 7)),
    (nn.Conv2d(2, 4, (3, 1), padding="same", padding_mode="circular"), (2, 2, 5, 4)),
    (nn.Conv1d(3, 5, 3, padding=2, dilation=2), (2, 3, 11)),
    (nn.Conv1d(4, 4, 1, groups=4), (2, 4, 6)),
]


@pytest.mark.parametrize(("float_layer", "sample"), CONVS)
def test_temporal_conv_equals_the_per_timestep_loop_forward_and_grads(float_layer, sample):
    torch.manual_seed(0)
    cls = QuantConv2d if isinstance(float_layer, nn.Conv2d) else QuantConv1d
    layer = cls.from_float(float_layer, "tawq", T)
    x = torch.randn(T, *sample, requires_grad=True)
    params = [p for p in (x, layer.weight, layer.bias) if p is not None]
    y = layer(x)
    upstream = torch.randn_like(y)
    fast = torch.autograd.grad((y * upstream).sum(), params)
    ref = per_step_conv(layer, x, layer.effective_weight())
    slow = torch.autograd.grad((ref * upstream).sum(), params)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    flat = Folded(layer)(x.detach())  # [T*B, C, ...] gives the same numbers, flattened back
    torch.testing.assert_close(flat, y.detach().flatten(0, 1))


def test_temporal_conv_is_one_conv_call(monkeypatch):
    calls = []
    original = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(1) or original(*a, **k))
    layer = QuantConv2d.from_float(nn.Conv2d(3, 4, 3), "tawq", T)
    layer(torch.randn(T, 2, 3, 6, 6))
    assert len(calls) == 1


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sample", [(3, 7), (3, 5, 7)])  # [B, F] and [B, tokens, F]
def test_temporal_linear_equals_the_per_timestep_loop(bias, sample):
    torch.manual_seed(1)
    layer = QuantLinear.from_float(nn.Linear(7, 5, bias=bias), "tawq", T)
    x = torch.randn(T, *sample, requires_grad=True)
    params = [p for p in (x, layer.weight, layer.bias) if p is not None]
    y = layer(x)
    upstream = torch.randn_like(y)
    fast = torch.autograd.grad((y * upstream).sum(), params)
    w = layer.effective_weight()
    ref = torch.stack([F.linear(x[t], w[t], layer.bias) for t in range(T)])
    slow = torch.autograd.grad((ref * upstream).sum(), params)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(Folded(layer)(x.detach()), y.detach().flatten(0, 1))


@pytest.mark.parametrize("name", ["fp32", "ternary", "ptq8"])
def test_static_quantizers_use_one_weight_for_every_layout(name):
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = QuantConv2d.from_float(conv, name, T)
    x = torch.randn(T, 2, 3, 5, 5)
    expected = F.conv2d(x.flatten(0, 1), layer.effective_weight(), conv.bias, padding=1)
    torch.testing.assert_close(layer(x), expected.reshape(T, 2, 4, 5, 5))
    torch.testing.assert_close(layer(x.flatten(0, 1)), expected)
    if name == "fp32":
        torch.testing.assert_close(layer(x.flatten(0, 1)), conv(x.flatten(0, 1)))


def test_subclasses_of_the_torch_layers_with_the_documented_attributes():
    layers = [QuantLinear(3, 2, quantizer="tawq", timesteps=2), QuantConv1d(2, 2, 3, quantizer="binary", timesteps=2),
              QuantConv2d(2, 2, 3, quantizer="ptq8", timesteps=2)]
    for layer, base in zip(layers, (nn.Linear, nn.Conv1d, nn.Conv2d), strict=True):
        assert isinstance(layer, base) and isinstance(layer.weight, nn.Parameter)
        assert isinstance(layer.quantizer, tawq_core.Quantizer) and layer.timesteps == 2
        expected = (2, *layer.weight.shape) if layer.quantizer.temporal else layer.weight.shape
        assert layer.effective_weight().shape == expected
        assert f"quantizer={layer.quantizer.name}" in repr(layer)


def test_shape_errors_say_what_is_wrong():
    conv = QuantConv2d.from_float(nn.Conv2d(3, 4, 3), "tawq", T)
    with pytest.raises(ShapeError, match="used on its own: flattened"):
        conv(torch.randn(8, 3, 8, 8))  # B unknown outside a quantized model: never guessed
    with pytest.raises(ShapeError, match=r"expects \[T=4, B, ...\]"):
        conv(torch.randn(3, 2, 3, 8, 8))
    with pytest.raises(ShapeError, match="3 input channels"):
        conv(torch.randn(T, 2, 5, 8, 8))
    with pytest.raises(ShapeError, match="dims"):
        conv(torch.randn(T, 1, 2, 3, 8, 8))
    conv1 = QuantConv1d.from_float(nn.Conv1d(3, 4, 3), "ternary", T)
    with pytest.raises(ShapeError, match="3 input channels"):
        conv1(torch.randn(2, 5, 8))
    linear = QuantLinear.from_float(nn.Linear(5, 2), "tawq", T)
    with pytest.raises(ShapeError, match="used on its own"):
        linear(torch.randn(8, 5))
    with pytest.raises(ShapeError, match=r"\[\.\.\., 5\]"):
        linear(torch.randn(T, 2, 4))


def test_from_float_copies_weights_and_keeps_device_dtype_role_and_state_dict_keys():
    conv = tawq_core.mark(nn.Conv2d(2, 3, 3).double(), "stem")
    conv.bias.requires_grad_(False)
    layer = QuantConv2d.from_float(conv, "tawq", T)
    assert layer.weight.dtype == torch.float64 and torch.equal(layer.weight, conv.weight)
    assert layer.weight.data_ptr() != conv.weight.data_ptr()  # a copy, not an alias
    assert not layer.bias.requires_grad and tawq_core.role_of(layer) is tawq_core.LayerRole.STEM
    assert layer.state_dict().keys() == conv.state_dict().keys()
    assert layer.effective_weight().dtype == torch.float64
    with pytest.raises(TypeError, match="plain Conv2d"):
        QuantConv2d.from_float(nn.Conv1d(2, 3, 3), "tawq", T)
    with pytest.raises(TypeError, match="plain Conv2d"):
        QuantConv2d.from_float(layer, "tawq", T)


def test_eval_cache_is_reused_and_invalidated():
    layer = QuantLinear.from_float(nn.Linear(6, 4), "tawq", T).eval()
    with torch.no_grad():
        first = layer.effective_weight()
        assert layer.effective_weight() is first
        layer.weight.mul_(-1)  # an in-place update (optimizer step, load_state_dict) bumps the version
        second = layer.effective_weight()
    assert second is not first and torch.equal(second, -first)
    layer.timesteps = 2
    with torch.no_grad():
        assert layer.effective_weight().shape[0] == 2
    layer.train()
    assert layer._cache is None
    assert layer.effective_weight().grad_fn is not None  # training: fresh and differentiable
    layer.eval()
    assert layer.effective_weight().grad_fn is not None  # eval with grad enabled: not cached


def test_autocast_forward():
    layer = QuantConv1d.from_float(nn.Conv1d(3, 4, 3), "tawq", T)
    x = torch.randn(T, 2, 3, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), layer(x), rtol=0.05, atol=0.05)
