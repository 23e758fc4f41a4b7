"""`lif`, `if` and `plif`: multi-step integrate-and-fire neurons with surrogate gradients.

All three share one set of equations, those of the `NeuronDynamics` each layer holds as `dynamics` (its
one description: the eager loop, the fused kernels and the exporters read it), and differ only in the leak:
none (IF), a fixed time constant tau (LIF), or a learned one (PLIF, spikingjelly's ParametricLIF
parametrization ``1/tau = sigmoid(w)``, ``w = -log(tau_init - 1)``). Input and output are ``[T, B, ...]``;
the membrane starts fresh on every call. Defaults are the TaWQ reference's: tau 2, threshold 1, hard
reset to 0, decay_input, detached reset, sigmoid surrogate with alpha 4.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from tawq_core import ConfigError, Neuron, ShapeError, hookimpl
from tawq_core.plugin import NeuronDynamics, check_multistep
from tawq_plugins.neurons.dynamics import Leak, multistep
from tawq_plugins.neurons.surrogate import get_surrogate


def _finite(name: str, who: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{who}: {name} must be a finite number, got {value!r}")
    return float(value)


def _tau(who: str, tau: object, strict: bool) -> float:
    tau = _finite("tau", who, tau)
    if tau < 1 or (strict and tau == 1):
        bound = "> 1" if strict else ">= 1"
        raise ConfigError(f"{who}: tau must be {bound} (the leak per step is 1/tau), got {tau}")
    return tau


class _IntegrateFire(Neuron):
    """Shared options and validation; subclasses only say what the leak is."""

    kind = "if"
    leak = "none"

    def __init__(self, *, k: float | None = None, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, surrogate: str = "sigmoid",
                 alpha: float | None = None):
        super().__init__()
        who = f"neuron {self.kind!r}"
        v_threshold = _finite("v_threshold", who, v_threshold)
        if v_reset is not None:
            v_reset = _finite("v_reset", who, v_reset)
            if v_reset >= v_threshold:
                raise ConfigError(f"{who}: v_reset ({v_reset}) must be below v_threshold ({v_threshold}), "
                                  "or None for soft reset")
        found = get_surrogate(surrogate)
        alpha = found.default_alpha if alpha is None else _finite("alpha", who, alpha)
        if alpha <= 0:
            raise ConfigError(f"{who}: surrogate alpha must be > 0, got {alpha}")
        self._dynamics = NeuronDynamics(self.leak, k, bool(decay_input), v_threshold, v_reset, bool(detach_reset),
                                        found.name, alpha, source=f"tawq:{self.kind}")

    @property
    def dynamics(self) -> NeuronDynamics:
        """This layer's dynamics: constants and update rule (PLIF: with its current learned k)."""
        return self._dynamics

    def leak_constant(self) -> Leak:
        """k as the kernels get it: None (IF), tau (LIF), or PLIF's learnable sigmoid(w) tensor."""
        return self._dynamics.k

    def describe_dynamics(self) -> NeuronDynamics:
        return self.dynamics

    def forward(self, x: Tensor) -> Tensor:
        check_multistep(x, f"neuron {self.kind!r}")
        if x.shape[0] == 0:
            raise ShapeError(f"neuron {self.kind!r} got T = 0 timesteps (input shape {tuple(x.shape)})")
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return multistep(x, self._dynamics, self.leak_constant())

    def extra_repr(self) -> str:
        d = self._dynamics
        reset = "soft" if d.v_reset is None else d.v_reset
        return (f"v_threshold={d.v_threshold}, v_reset={reset}, detach_reset={d.detach_reset}, "
                f"surrogate={d.surrogate}(alpha={d.alpha})")


class IF(_IntegrateFire):
    """Integrate-and-fire without leak: ``h = v + x``."""

    def __init__(self, *, v_threshold: float = 1.0, v_reset: float | None = 0.0, detach_reset: bool = True,
                 surrogate: str = "sigmoid", alpha: float | None = None):
        super().__init__(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset,
                         surrogate=surrogate, alpha=alpha)


class LIF(_IntegrateFire):
    """Leaky integrate-and-fire with a fixed time constant tau."""

    kind = "lif"
    leak = "div"

    def __init__(self, *, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, surrogate: str = "sigmoid",
                 alpha: float | None = None):
        super().__init__(k=_tau(f"neuron {self.kind!r}", tau, strict=False), v_threshold=v_threshold,
                         v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate,
                         alpha=alpha)

    @property
    def tau(self) -> float:
        """The time constant: the description's k."""
        return self._dynamics.k

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self._dynamics.decay_input}, {super().extra_repr()}"


class PLIF(_IntegrateFire):
    """LIF whose time constant is learned: one parameter ``w`` per layer, ``1/tau = sigmoid(w)``."""

    kind = "plif"
    leak = "mul"

    def __init__(self, *, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = True, surrogate: str = "sigmoid",
                 alpha: float | None = None):
        tau = _tau(f"neuron {self.kind!r}", tau, strict=True)
        w = torch.tensor(-math.log(tau - 1.0))
        # the description's k is sigmoid(w) at construction; `dynamics` and the kernels read the current one
        super().__init__(k=float(torch.sigmoid(w)), v_threshold=v_threshold, v_reset=v_reset,
                         decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, alpha=alpha)
        self.w = nn.Parameter(w)

    @property
    def dynamics(self) -> NeuronDynamics:
        return dataclasses.replace(self._dynamics, k=float(torch.sigmoid(self.w.detach())))

    @property
    def tau(self) -> float:
        """The current (learned) time constant."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def leak_constant(self) -> Leak:
        return torch.sigmoid(self.w)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g} (learned), decay_input={self._dynamics.decay_input}, {super().extra_repr()}"


@hookimpl
def tawq_register_neurons(register):
    register("lif", LIF)
    register("if", IF)
    register("plif", PLIF)
