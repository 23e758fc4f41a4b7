"""Neurons in export form: their dynamics (`NeuronDynamics`) and one plain-op module (`InferenceNeuron`).

Training-time neurons run their time loop inside custom autograd Functions or write spikes into a
preallocated tensor in place; the TorchScript tracer behind the ONNX exporter drops such writes
silently (the exported graph returns zeros). Export therefore swaps every neuron it recognises for
`InferenceNeuron`, which runs its `NeuronDynamics` reference loop (`NeuronDynamics.run`: the same
equations in out-of-place ops and ``torch.stack``), and the NIR exporter maps the same description to
NIR LIF/IF nodes. Recognised: tawq neurons (`lif`, `if`, `plif`, and plugin neurons that describe
themselves) and spikingjelly's multi-step ``IFNode``/``LIFNode``/``ParametricLIFNode``, which follow
the same rules (see `tawq_core.plugin_api.neuron.NeuronDynamics`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tawq_core.plugin_api.neuron import Neuron, NeuronDynamics


def _spikingjelly_spec(module: nn.Module) -> NeuronDynamics | None:
    try:
        from spikingjelly.activation_based import neuron as sj_neuron
    except ImportError:
        return None
    kinds = {sj_neuron.IFNode: "none", sj_neuron.LIFNode: "div", sj_neuron.ParametricLIFNode: "mul"}
    leak = kinds.get(type(module))
    if leak is None or getattr(module, "step_mode", "s") != "m":
        return None
    if leak == "none":
        k, decay_input = None, True
    elif leak == "div":
        k, decay_input = float(module.tau), bool(module.decay_input)
    else:
        k, decay_input = float(torch.sigmoid(module.w.detach())), bool(module.decay_input)
    v_reset = None if module.v_reset is None else float(module.v_reset)
    return NeuronDynamics(leak, k, decay_input, float(module.v_threshold), v_reset,
                          detach_reset=bool(module.detach_reset), surrogate=type(module.surrogate_function).__name__,
                          alpha=float(getattr(module.surrogate_function, "alpha", 1.0)),
                          source=f"spikingjelly:{type(module).__name__}")


def neuron_spec(module: nn.Module) -> NeuronDynamics | None:
    """The dynamics of a recognised multi-step neuron module, or None if `module` is not one.

    tawq neurons (built-in or plugin) describe themselves (`Neuron.describe_dynamics`); spikingjelly's
    are read from their attributes.
    """
    if isinstance(module, Neuron):
        return module.describe_dynamics()
    if type(module).__module__.startswith("spikingjelly."):
        return _spikingjelly_spec(module)
    return None


class InferenceNeuron(nn.Module):
    """Multi-step neurons ``[T, B, ...] -> spikes`` in out-of-place ops only, so tracers record them."""

    def __init__(self, spec: NeuronDynamics):
        super().__init__()
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        return self.spec.run(x)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec.to_dict().items())
