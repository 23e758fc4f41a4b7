"""Neurons in export form: their dynamics (`NeuronDynamics`) and one plain-op module (`InferenceNeuron`).

Training-time neurons run their time loop inside custom autograd Functions or write spikes into a
preallocated tensor in place; the TorchScript tracer behind the ONNX exporter drops such writes
silently (the exported graph returns zeros). Export therefore swaps every neuron it recognises for
`InferenceNeuron`, the same equations written with out-of-place ops and ``torch.stack``, and the NIR
exporter maps the same `NeuronDynamics` to NIR LIF/IF nodes. Recognised: tawq neurons (`lif`, `if`, `plif`)
and spikingjelly's multi-step ``IFNode``/``LIFNode``/``ParametricLIFNode``, which share one set of
equations (see tawq_plugins.neurons.dynamics):

* charge, leak "div" (k = tau): ``h = v + (x - (v - v_r)) / k`` (decay_input) or ``h = v - (v - v_r) / k + x``;
  leak "mul" (k = 1/tau, PLIF) multiplies by k instead; leak "none" (IF): ``h = v + x``.
* fire ``s = h >= v_th``; hard reset ``v = v_r if s else h``; soft reset (v_reset None) ``v = h - s·v_th``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tawq_core.neuron import Neuron, NeuronDynamics


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

    def _charge(self, x: Tensor, v: Tensor) -> Tensor:
        s, k, rest = self.spec, self.spec.k, self.spec.rest
        if s.leak == "none":
            return v + x
        if s.leak == "div":
            return v + (x - (v - rest)) / k if s.decay_input else v - (v - rest) / k + x
        return v + (x - (v - rest)) * k if s.decay_input else v - (v - rest) * k + x

    def forward(self, x: Tensor) -> Tensor:
        s = self.spec
        v = torch.full_like(x[0], s.rest)
        spikes = []
        for t in range(x.shape[0]):
            h = self._charge(x[t], v)
            fired = h >= s.v_threshold
            spikes.append(fired.to(x.dtype))
            v = torch.where(fired, s.v_reset, h) if s.v_reset is not None else h - fired.to(h.dtype) * s.v_threshold
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec.to_dict().items())
