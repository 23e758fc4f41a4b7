"""Deployed layers one at a time: conv geometry (stride, padding, dilation, groups, bias), spike counts and
analog input, the fp32 spike-driven row, and the errors a caller can make."""

from __future__ import annotations

import pytest
import torch
from deploy_models import B, T, quantized_model, reference
from torch import nn

from tawq_core import ConfigError, ShapeError, create
from tawq_core.deploy import deploy, deploy_packed_layer, kernels_used, spike_driven
from tawq_core.deploy.codes import integer_weights
from tawq_core.nn.layers import quantized_layer_type

LAYERS = {
    "conv2d-groups-stride-dilation": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
    "conv2d-wide-groups-dilation": lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),  # per-sample products
    "conv1d-stride": lambda: nn.Conv1d(5, 7, 3, stride=2, padding=1),
    "conv1d-long": lambda: nn.Conv1d(3, 4, 3, padding=1),  # several column chunks per weight step
    "conv2d-1x1-stride": lambda: nn.Conv2d(6, 5, 1, stride=2, bias=False),
    "linear-tokens": lambda: nn.Linear(9, 4),
}
SAMPLES = {"conv2d-groups-stride-dilation": (4, 7, 7), "conv2d-wide-groups-dilation": (4, 17, 17),
           "conv1d-stride": (5, 11), "conv1d-long": (3, 700),
           "conv2d-1x1-stride": (6, 5, 5),
           "linear-tokens": (3, 9)}  # linear: [T, B, tokens, features]


def _deployed(kind: str, quantizer: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(1)
    fake_quant = quantized_layer_type(LAYERS[kind]()).from_float(LAYERS[kind](), quantizer, T).eval()
    return fake_quant, deploy_packed_layer(fake_quant, fake_quant.pack(), fake_quant.quantizer)


@pytest.mark.parametrize("gemm", ["int8", "fp32"])
@pytest.mark.parametrize("quantizer", ["tawq", "mtawq", "ternary", "ptq8"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_geometry_and_inputs_are_exact(kind, quantizer, gemm, monkeypatch):
    """Both integer products (`gemm_choice`): spikes and counts run them; analog input the dense path, which on
    the float32 product is that same op (so it keeps that name)."""
    from tawq_backends.kernels.gemm_choice import ENV, choice

    monkeypatch.setenv(ENV, "on" if gemm == "int8" else "off")
    choice.cache_clear()
    fake_quant, layer = _deployed(kind, quantizer)
    kernel = f"cpu.{gemm}-gemm." + ("int8" if quantizer == "ptq8" else "bitplanes")
    shape = (T, B, *SAMPLES[kind])
    inputs = {"spikes": (torch.rand(shape) < 0.2).float(), "counts": torch.randint(0, 6, shape).float(),
              "analog": torch.randn(shape)}
    for label, x in inputs.items():
        with torch.no_grad():
            y = layer(x)
        assert torch.equal(y, reference(fake_quant, x)), label
        assert layer.last_kernel == (kernel if label != "analog" or gemm == "fp32" else "dense.exact"), label
        assert (y - fake_quant(x)).abs().max() <= 1e-5 * max(1.0, float(y.abs().max()))


def test_padding_modes_the_kernel_cannot_pad_run_the_exact_dense_path():
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    fake_quant = quantized_layer_type(conv).from_float(conv, "ternary", T).eval()
    layer = deploy_packed_layer(fake_quant, fake_quant.pack(), fake_quant.quantizer)
    x = (torch.rand(T * B, 3, 5, 5) < 0.3).float()
    with torch.no_grad():
        assert (layer(x) - fake_quant(x)).abs().max() <= 1e-6
    assert layer.last_kernel == "dense.exact"


@pytest.mark.parametrize("quantizer", ["tawq", "mtawq", "ternary", "binary", "ptq8"])
def test_integer_weights_round_trip_the_packed_codes(quantizer):
    """Re-export reads the integer weights back from the deployed form: they equal the packed codes."""
    fake_quant, layer = _deployed("conv2d-groups-stride-dilation", quantizer)
    codes = integer_weights(fake_quant.pack(), builtin=True)
    rebuilt = layer.form.integer_weights(layer.geometry)
    assert torch.equal(rebuilt.q, codes.q) and torch.equal(rebuilt.alpha, codes.alpha)


def test_temporal_layers_follow_the_time_layout_contract():
    _, layer = _deployed("conv1d-stride", "tawq")
    with pytest.raises(ShapeError, match="ambiguous"):  # [T*B, ...] on its own: B unknown
        layer(torch.zeros(T * B, 5, 11))
    model, x = quantized_model("sew-resnet-1d", "tawq")
    with torch.no_grad():  # inside the model, [T*B, ...] is resolved by the model's forward hook
        deploy(model)(x)


def test_spike_driven_fp32_row_matches_the_fp32_model():
    torch.manual_seed(0)
    model = create("model", "sew-resnet", num_classes=4, sample_shape=(1, 16), layers=(1, 1), width=8).eval()
    x = torch.rand(T, B, 1, 16) * 3
    driven = spike_driven(model)
    with torch.no_grad():
        expected, got = model(x), driven(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert set(kernels_used(driven).values()) == {"cpu.fp32-spike-accumulate"}
    assert "stem.0.0" not in kernels_used(driven) and "head" not in kernels_used(driven)
    with pytest.raises(ConfigError, match="fp32 model"):
        spike_driven(quantized_model("mlp", "ternary")[0])


def test_bad_calls_fail_with_one_line():
    fake_quant, _ = _deployed("conv1d-stride", "ternary")
    with pytest.raises(ConfigError, match="unknown deploy backend"):
        deploy_packed_layer(fake_quant, fake_quant.pack(), fake_quant.quantizer, backend="tpu")
    with pytest.raises(ConfigError, match="does not fit"):
        deploy_packed_layer(nn.Conv1d(5, 8, 3), fake_quant.pack(), fake_quant.quantizer)


@pytest.mark.parametrize("quantizer", ["tawq", "mtawq", "binary"])
def test_bit_planes_expand_the_same_without_numba(quantizer, monkeypatch):
    """Without numba the int8 weights come from numpy's bit unpacking: the same values."""
    from tawq_backends.kernels import bitplane

    fake_quant, layer = _deployed("conv1d-long", quantizer)
    expected = layer.form.integer_weights(layer.geometry).q
    monkeypatch.setattr(bitplane, "_compiled_expand", None)
    assert torch.equal(layer.form.integer_weights(layer.geometry).q, expected)
