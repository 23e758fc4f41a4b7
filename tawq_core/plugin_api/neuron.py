"""The neuron interface: multi-step spiking modules on ``[T, B, ...]``, and their one dynamics description.

State (membrane potential) starts fresh on every forward call, so nothing leaks between batches and
there is no reset ritual to forget. Surrogate gradients make the spike function trainable.

`NeuronDynamics` describes a neuron's dynamics once: its constants, which of the integrate-and-fire
update rules it follows, and that rule itself (`charge`, `fire`, `reset`, `run`) plus the constants the
fused kernels take (`leak_id`, `reset_value`, `kernel_k`). The eager loop, the numba and Triton kernels,
the NIR runner and the export form all read it, so the equations are written once in Python (the kernels
restate them in their own languages, with their branches and constants selected from here). The
exporters (NIR, ONNX) read it through `Neuron.describe_dynamics`, so a plugin neuron that returns one
exports without any exporter knowing its class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.plugin_api.errors import ConfigError, ShapeError

#: "none": IF, ``h = v + x``; "div": LIF with k = tau, ``h = v + (x - (v - v_r)) / k``; "mul": k = 1/tau
#: (PLIF's sigmoid(w)), ``h = v + (x - (v - v_r)) * k``.
LEAKS = ("none", "div", "mul")


@dataclass(frozen=True)
class NeuronDynamics:
    """One layer of multi-step integrate-and-fire neurons: constants plus the update rule they select.

    Update rule, per step t, with v starting at `rest` on every forward call:

    * charge: leak "none" ``h = v + x``; "div" ``h = v + (x - (v - v_r)) / k`` (`decay_input`) or
      ``h = v - (v - v_r) / k + x``; "mul" the same with ``* k`` instead of ``/ k``.
    * fire: ``s = h >= v_threshold``.
    * reset: hard ``v = v_reset if s else h``; soft (``v_reset=None``) ``v = h - s * v_threshold``.

    Training-only fields (`detach_reset`, `surrogate`, `alpha`) say how gradients pass the spike; they
    do not change the forward values. `source` names who described it ("tawq:lif", "my-dist:adaptive").
    """

    leak: str
    k: float | None
    decay_input: bool = True
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    detach_reset: bool = True
    surrogate: str = "sigmoid"
    alpha: float = 4.0
    source: str = ""

    def __post_init__(self) -> None:
        who = f"NeuronDynamics({self.source or 'unnamed'})"
        if self.leak not in LEAKS:
            raise ConfigError(f"{who}: leak must be one of {', '.join(LEAKS)}, got {self.leak!r}")
        if (self.k is None) != (self.leak == "none"):
            raise ConfigError(f"{who}: leak {self.leak!r} needs k {'None' if self.leak == 'none' else '> 0'}, "
                              f"got {self.k!r}")
        numbers = {"v_threshold": self.v_threshold, "alpha": self.alpha, "k": self.k, "v_reset": self.v_reset}
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{who}: {name} must be finite, got {value!r}")
        if self.k is not None and self.k <= 0:
            raise ConfigError(f"{who}: k must be > 0, got {self.k}")
        if self.v_reset is not None and self.v_reset >= self.v_threshold:
            raise ConfigError(f"{who}: v_reset ({self.v_reset}) must be below v_threshold ({self.v_threshold})")

    @property
    def tau(self) -> float | None:
        """The membrane time constant in steps; None without leak (IF)."""
        if self.k is None:
            return None
        return float(self.k) if self.leak == "div" else 1.0 / float(self.k)

    @property
    def rest(self) -> float:
        """Initial membrane and the v_r of the charge equation (0 for soft reset)."""
        return 0.0 if self.v_reset is None else self.v_reset

    @property
    def hard(self) -> bool:
        """Hard reset (to `v_reset`) rather than soft (subtract `v_threshold`)."""
        return self.v_reset is not None

    @property
    def reset_value(self) -> float:
        """`v_reset` as a kernel's float argument (0.0, unused, for a soft reset)."""
        return 0.0 if self.v_reset is None else self.v_reset

    @property
    def leak_id(self) -> int:
        """The kernels' branch selector: 0 none, 1 div, 2 mul (the index in `LEAKS`)."""
        return LEAKS.index(self.leak)

    def kernel_k(self, k: float | Tensor | None = None, reciprocal: bool = False) -> float:
        """k (or the override `k`) as a kernel's float argument: 1.0 (unused) without leak, else k itself,
        or for "div" with `reciprocal` the float32 1/k that PyTorch's CUDA division by a scalar multiplies
        by (``a * (1/k)`` equals ``a / k`` bit for bit only when k is a power of two)."""
        k = self.k if k is None else k
        if k is None:
            return 1.0
        value = float(k.detach()) if isinstance(k, Tensor) else float(k)
        if reciprocal and self.leak == "div":
            return (torch.ones((), dtype=torch.float32) / value).item()
        return value

    def scale(self, a: Tensor, k: float | Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """The leak's factor applied to `a`: ``a / k`` ("div"), ``a * k`` ("mul"); `a` itself without leak."""
        k = self.k if k is None else k
        if self.leak == "none":
            return a
        return (torch.div if self.leak == "div" else torch.mul)(a, k, out=out)

    def charge(self, x: Tensor, v: Tensor, k: float | Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """h from input `x` and membrane `v`, in spikingjelly's operation order (spikes match it bit for
        bit). `k` overrides the constant (PLIF's learnable tensor); `out` receives h (tracers need None).
        ``v - 0.0`` is skipped: it is ``v`` bit for bit."""
        if self.leak == "none":
            return torch.add(v, x, out=out)
        shifted = v - self.rest if self.rest else v
        if self.decay_input:
            return torch.add(v, self.scale(x - shifted, k), out=out)
        return torch.add(v - self.scale(shifted, k), x, out=out)

    def fire(self, h: Tensor) -> Tensor:
        """Which neurons spike (bool): ``h >= v_threshold``."""
        return h >= self.v_threshold

    def reset(self, h: Tensor, fired: Tensor) -> Tensor:
        """The membrane after the spike: `v_reset` where fired (hard), or ``h - s * v_threshold`` (soft)."""
        if self.hard:
            return torch.where(fired, self.v_reset, h)
        return h - fired.to(h.dtype) * self.v_threshold

    def run(self, x: Tensor, k: float | Tensor | None = None) -> Tensor:
        """Spikes ``[T, ...]`` for input ``x [T, ...]`` from a fresh membrane: the reference loop, in
        out-of-place ops only so tracers (ONNX export) record it."""
        v = torch.full_like(x[0], self.rest)
        spikes = []
        for t in range(x.shape[0]):
            h = self.charge(x[t], v, k)
            fired = self.fire(h)
            spikes.append(fired.to(x.dtype))
            v = self.reset(h, fired)
        return torch.stack(spikes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tau": self.tau}


class Neuron(nn.Module, ABC):
    """A multi-step spiking neuron: input current ``[T, B, ...]`` -> spikes of the same shape."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Run all T steps from a fresh state and return the spike train."""

    def describe_dynamics(self) -> NeuronDynamics | None:
        """This neuron's dynamics, if they are one of the `NeuronDynamics` rules; None if not.

        None means NIR export refuses models using this neuron (with one line naming it); ONNX export
        then traces its forward as it is, and onnxruntime verification judges the result.
        """
        return None


def check_multistep(x: Tensor, who: str = "neuron") -> None:
    """Reject inputs that are not time-major ``[T, B, ...]`` with a clear message."""
    if x.dim() < 2:
        raise ShapeError(
            f"{who} expects a time-major tensor [T, B, ...], got shape {tuple(x.shape)}; "
            "repeat static inputs over T (tawq_core.encode_batch) first"
        )
