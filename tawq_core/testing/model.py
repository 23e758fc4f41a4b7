"""`check_model`: the model-factory contract, quantized training, and that the quantized model deploys."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.nn.roles import LayerRole, role_of
from tawq_core.plugin_api.quantizer import QuantMode
from tawq_core.testing.subject import CheckReport, Subject, resolve

BATCH = 2


def _logits(s: Subject, model: nn.Module, x: Tensor, num_classes: int, where: str) -> Tensor:
    y = s.call(f"forward {where}", model, x)
    if not isinstance(y, Tensor) or tuple(y.shape) != (x.shape[1], num_classes):
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        s.fail(f"forward {where} on [T, B, ...] = {tuple(x.shape)} returned {got}, expected logits "
               f"[B, num_classes] = {(x.shape[1], num_classes)}")
    if not bool(torch.isfinite(y).all()):
        s.fail(f"forward {where} returned non-finite logits")
    return y


def _roles(s: Subject, model: nn.Module) -> None:
    roles = {role_of(m) for m in model.modules()}
    missing = [r.value for r in (LayerRole.STEM, LayerRole.HEAD) if r not in roles]
    if missing:
        s.fail(f"marks no {' and no '.join(missing)} layer (tawq_core.mark): quantization policies need them")


def _quantized(s: Subject, model: nn.Module, x: Tensor, quantizer: str, num_classes: int) -> nn.Module:
    from tawq_core.nn.quantization import quantize, quantized_layers

    q = copy.deepcopy(model)
    s.call(f"quantize(model, {quantizer!r})", quantize, q, quantizer, int(x.shape[0]))
    layers = list(quantized_layers(q))
    if not layers:
        s.fail("quantize() found no conv/linear layer to quantize besides stem and head")
    q.train()
    y = _logits(s, q, x, num_classes, f"quantized with {quantizer!r}")
    if layers[0][1].quantizer.mode is not QuantMode.QAT:
        return q.eval()  # PTQ: no gradients to check
    s.call("backward through the quantized model", y.sum().backward)
    # None, not zero: a layer whose inputs never spiked on this tiny batch legitimately gets a zero gradient
    dead = [name for name, layer in layers
            if layer.weight.grad is None or not bool(torch.isfinite(layer.weight.grad).all())]
    if dead:
        s.fail(f"no finite gradient reaches the latent weight of quantized layer(s) {', '.join(dead[:3])} (QAT)")
    return q.eval()


def _deploys(s: Subject, fp32: nn.Module, quantized: nn.Module, x: Tensor) -> None:
    """Packed to the tawq format and loaded back, the fake-quant form gives bit-identical logits; the
    deployed form (`tawq_core.deploy`, packed weights only, kernels or the unpack fallback) the same
    predictions and logits within float summation-order error (1e-4 of the largest)."""
    from tawq_core.deploy import deploy
    from tawq_core.export import export, load_packed

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        s.call("export to the packed tawq format", export, quantized, "tawq", path, verify=False)
        loaded = s.call("load_packed", load_packed, path, copy.deepcopy(fp32), deploy=False)
    deployed = s.call("tawq_core.deploy.deploy", deploy, quantized)
    with torch.no_grad():
        want, reloaded, got = quantized(x), loaded(x), s.call("the deployed model's forward", deployed, x)
    if not torch.equal(want, reloaded):
        s.fail("the quantized model, packed and loaded back (load_packed), gives different logits")
    if tuple(got.shape) != tuple(want.shape) or not bool((want - got).abs().max() <= 1e-4 * want.abs().max()) \
            or not torch.equal(want.argmax(-1), got.argmax(-1)):
        s.fail("the deployed model (tawq_core.deploy) gives other logits than the quantized model")


def check_model(model: Any, *, sample_shape: tuple[int, ...] = (3, 16, 16), num_classes: int = 3,
                timesteps: int = 2, quantizer: str = "ternary", **options: Any) -> CheckReport:
    """Check a model factory (registered name, or callable) against the model contract.

    The factory is called with ``num_classes``, ``sample_shape`` and `options`; the model is run on a
    seeded ``[timesteps, 2, *sample_shape]`` batch, quantized with `quantizer` (trained one step's worth
    of gradients), packed and loaded back. Raises `ConformanceError` with one line naming what broke.
    """
    s = resolve("model", model, type(None), options)
    report = CheckReport(s.label)
    torch.manual_seed(0)
    net = s.make(nn.Module, num_classes=num_classes, sample_shape=tuple(sample_shape))
    x = torch.randn(timesteps, BATCH, *sample_shape, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        first = _logits(s, net, x, num_classes, "(eval)")
        _logits(s, net, x * 2, num_classes, "(eval)")
        if not torch.equal(_logits(s, net, x, num_classes, "(eval)"), first):
            s.fail("eval-mode logits depend on the previous batch: neuron state must start fresh per forward")
    report.passed("logits [B, num_classes] from [T, B, ...]; fresh state per forward")
    _roles(s, net)
    report.passed("stem and head marked")
    quantized = _quantized(s, net, x, quantizer, num_classes)
    report.passed(f"quantizes with {quantizer!r}; gradients reach every quantized latent weight (if QAT)")
    _deploys(s, net, quantized, x)
    report.passed("packed and reloaded bit-exactly; deployed (tawq_core.deploy) with the same outputs")
    return report
