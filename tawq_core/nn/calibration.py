"""`calibrate`: fit each quantized layer's quantizer state on data (post-training quantization).

The state lives on the layer (`Quantizer.init_state`, buffers ``qstate_<name>``), so one quantizer
instance can serve many layers and the fitted state travels with state dicts, checkpoints and packed
files. Calibration runs the model on the batches as it will run at inference (eval mode, no autograd,
time-major ``[T, B, ...]``) and hands each stateful layer's quantizer the input that layer received.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from tawq_core.measure.sops import eval_no_grad
from tawq_core.nn.quantization import quantized_layers


def calibrate(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Run `model` on each ``[T, B, ...]`` batch in order; before every call of a quantized layer whose
    quantizer has state, ``quantizer.calibrate(layer state, latent weight, layer input)`` updates that
    state in place. Returns how many layers were calibrated (0, without running the model, when no
    quantizer keeps state: weight-only quantizers such as ptq8 fit nothing)."""
    layers = [layer for _, layer in quantized_layers(model) if layer.quantizer_state()]
    if not layers:
        return 0

    def observe(layer: nn.Module, args: tuple[Any, ...]) -> None:
        layer.quantizer.calibrate(layer.quantizer_state(), layer.weight.detach(), args[0].detach())
        layer.state_changed()

    handles = [layer.register_forward_pre_hook(observe) for layer in layers]
    try:
        with eval_no_grad(model):
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return len(layers)
