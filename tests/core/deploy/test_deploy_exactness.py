"""Issue #12 item 4: deployed layers compute conv(x, q) * alpha exactly, spikes are bit-identical, logits
agree with the fake-quant module; every built-in architecture x every built-in quantizer."""

from __future__ import annotations

import pytest
import torch
from deploy_models import MODELS, QUANTIZERS, quantized_model, reference

from tawq_core.deploy import DeployedLayer, deploy, kernels_used

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _record(model: torch.nn.Module, kinds: tuple[type, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every module of `kinds` at the next forward, by name."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, module in model.named_modules():
        if isinstance(module, kinds) and name:
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (i[0], o)))
    return seen


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_deployed_model_is_exact(model_name, quantizer):
    model, x = quantized_model(model_name, quantizer)
    deployed, dense = deploy(model), deploy(model, backend="torch")
    layers = _record(deployed, (DeployedLayer,))
    every = _record(deployed, (torch.nn.Module,))
    every_dense = _record(dense, (torch.nn.Module,))
    with torch.no_grad():
        logits_fq, logits, logits_dense = model(x), deployed(x), dense(x)

    fake_quant = dict(model.named_modules())
    fired = 0
    for name, (inp, out) in layers.items():  # pre-activations: exactly the fp32 reference
        assert torch.equal(out, reference(fake_quant[name], inp)), name
        fired += bool(inp.any())
    assert fired >= len(layers) // 2, "too few layers fire: the comparison would be vacuous"
    assert set(kernels_used(deployed).values()) == {"cpu.int8-gemm.int8" if quantizer == "ptq8"
                                                    else "cpu.int8-gemm.bitplanes"}
    assert set(kernels_used(dense).values()) == {"dense.exact"}
    for name, (_, out) in every.items():  # every spike (and every other activation) bit-identical
        if isinstance(out, torch.Tensor):
            assert torch.equal(out, every_dense[name][1]), name
    assert torch.equal(logits, logits_dense)
    assert (logits - logits_fq).abs().max() <= 1e-4 * logits_fq.abs().max()
    assert torch.equal(logits.argmax(1), logits_fq.argmax(1))


@pytest.mark.parametrize("model_name", ["sew-resnet-2d", "qkformer"])
def test_spike_counts_from_residual_additions_run_on_the_kernel(model_name):
    """SEW-ResNet's ADD and QKFormer's residual stream feed counts > 1: still the integer kernel, still exact."""
    model, x = quantized_model(model_name, "tawq")
    deployed = deploy(model)
    layers = _record(deployed, (DeployedLayer,))
    with torch.no_grad():
        deployed(x)
    fake_quant = dict(model.named_modules())
    counted = [name for name, (inp, _) in layers.items() if inp.max() > 1]
    assert counted
    for name in counted:
        inp, out = layers[name]
        assert torch.equal(out, reference(fake_quant[name], inp)), name
    assert set(kernels_used(deployed).values()) == {"cpu.int8-gemm.bitplanes"}


@pytest.mark.parametrize("quantizer", ["tawq", "ptq8"])
def test_float32_gemm_choice_is_exact_too(quantizer, monkeypatch):
    """Where int8 GEMM is slower than float32 (no int8 dot-product instructions), the same integer weights
    go through float32 GEMM: named as such, and equal to the int8 kernels bit for bit."""
    from tawq_backends.kernels.gemm_choice import ENV, choice

    model, x = quantized_model("sew-resnet-1d", quantizer)
    with torch.no_grad():
        expected = deploy(model)(x)
        monkeypatch.setenv(ENV, "off")
        choice.cache_clear()
        deployed = deploy(model)
        logits = deployed(x)
    assert set(kernels_used(deployed).values()) == {"cpu.fp32-gemm.int8" if quantizer == "ptq8"
                                                    else "cpu.fp32-gemm.bitplanes"}
    assert torch.equal(logits, expected)


@pytest.mark.parametrize("model_name", ["mlp", "sew-resnet-1d", "sew-resnet-2d", "spikingformer"])
def test_batch_1_on_the_float32_path_is_exact(model_name, monkeypatch):
    """Batch 1 (one row per weight step) on the float32 path and the dense path: every deployed
    pre-activation equals the fp32 reference."""
    from tawq_backends.kernels.gemm_choice import ENV, choice

    monkeypatch.setenv(ENV, "off")
    choice.cache_clear()
    model, x = quantized_model(model_name, "tawq")
    x = x[:, :1].contiguous()
    for deployed in (deploy(model), deploy(model, backend="torch")):
        layers = _record(deployed, (DeployedLayer,))
        with torch.no_grad():
            logits = deployed(x)
        fake_quant = dict(model.named_modules())
        for name, (inp, out) in layers.items():
            assert torch.equal(out, reference(fake_quant[name], inp)), name
        with torch.no_grad():
            assert torch.equal(logits.argmax(1), model(x).argmax(1))
