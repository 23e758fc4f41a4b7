"""Neurons in export form: one parameter record (`NeuronSpec`) and one plain-op module (`InferenceNeuron`).

Training-time neurons run their time loop inside custom autograd Functions or write spikes into a
preallocated tensor in place; the TorchScript tracer behind the ONNX exporter drops such writes
silently (the exported graph returns zeros). Export therefore swaps every neuron it recognises for
`InferenceNeuron`, the same equations written with out-of-place ops and ``torch.stack``, and the NIR
exporter maps the same `NeuronSpec` to NIR LIF/IF nodes. Recognised: tawq neurons (`lif`, `if`, `plif`)
and spikingjelly's multi-step ``IFNode``/``LIFNode``/``ParametricLIFNode``, which share one set of
equations (see tawq_plugins.neurons.dynamics):

* charge, leak "div" (k = tau): ``h = v + (x - (v - v_r)) / k`` (decay_input) or ``h = v - (v - v_r) / k + x``;
  leak "mul" (k = 1/tau, PLIF) multiplies by k instead; leak "none" (IF): ``h = v + x``.
* fire ``s = h >= v_th``; hard reset ``v = v_r if s else h``; soft reset (v_reset None) ``v = h - s·v_th``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.neuron import Neuron

LEAKS = ("none", "div", "mul")


@dataclass(frozen=True)
class NeuronSpec:
    """Everything a deployment target needs to run one layer of multi-step integrate-and-fire neurons."""

    leak: str  # "none" (IF), "div" (k = tau) or "mul" (k = 1/tau)
    k: float | None
    decay_input: bool
    v_threshold: float
    v_reset: float | None  # None: soft reset (subtract the threshold)
    source: str  # where the parameters came from, e.g. "tawq:lif" or "spikingjelly:LIFNode"

    @property
    def tau(self) -> float | None:
        """The membrane time constant in steps; None without leak (IF)."""
        if self.leak == "none":
            return None
        return float(self.k) if self.leak == "div" else 1.0 / float(self.k)

    @property
    def rest(self) -> float:
        """Initial membrane and the v_r of the charge equation (0 for soft reset)."""
        return 0.0 if self.v_reset is None else self.v_reset

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tau": self.tau}


def _tawq_spec(module: Neuron) -> NeuronSpec | None:
    dynamics = getattr(module, "dynamics", None)
    leak_constant = getattr(module, "leak_constant", None)
    if dynamics is None or leak_constant is None or getattr(dynamics, "leak", None) not in LEAKS:
        return None
    k = leak_constant()
    k = float(k.detach()) if isinstance(k, Tensor) else (None if k is None else float(k))
    return NeuronSpec(dynamics.leak, k, bool(dynamics.decay_input), float(dynamics.v_threshold),
                      None if dynamics.v_reset is None else float(dynamics.v_reset),
                      f"tawq:{getattr(module, 'kind', type(module).__name__.lower())}")


def _spikingjelly_spec(module: nn.Module) -> NeuronSpec | None:
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
    return NeuronSpec(leak, k, decay_input, float(module.v_threshold), v_reset,
                      f"spikingjelly:{type(module).__name__}")


def neuron_spec(module: nn.Module) -> NeuronSpec | None:
    """The spec of a recognised multi-step neuron module, or None if `module` is not one."""
    if isinstance(module, Neuron):
        return _tawq_spec(module)
    if type(module).__module__.startswith("spikingjelly."):
        return _spikingjelly_spec(module)
    return None


class InferenceNeuron(nn.Module):
    """Multi-step neurons ``[T, B, ...] -> spikes`` in out-of-place ops only, so tracers record them."""

    def __init__(self, spec: NeuronSpec):
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
