"""The neuron interface: multi-step spiking modules on ``[T, B, ...]``, and their one dynamics description.

State (membrane potential) starts fresh on every forward call, so nothing leaks between batches and
there is no reset ritual to forget. Surrogate gradients make the spike function trainable.

`NeuronDynamics` describes a neuron's dynamics once: its constants and which of the integrate-and-fire
update rules it follows. The exporters (NIR, ONNX) read it through `Neuron.describe_dynamics`, so a
plugin neuron that returns one exports without any exporter knowing its class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

from tawq_core.errors import ConfigError, ShapeError

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
