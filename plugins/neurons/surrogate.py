"""Surrogate gradients of the spike function, looked up by name.

The forward of a spike is always the Heaviside step ``u >= 0``; only the backward differs. A surrogate
here is just its derivative ``dσ/du`` and a default sharpness ``alpha``, because the neurons compute
BPTT by hand and need nothing else. The formulas are spikingjelly's, so tawq neurons reproduce its
gradients for the same settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tawq_core import ConfigError


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate: ``derivative(u, alpha)`` of a smooth stand-in for the step at ``u = 0``."""

    name: str
    default_alpha: float
    derivative: Callable[[Tensor, float], Tensor]
    fused_chain: Callable[[Tensor, Tensor, float], Tensor] | None = None

    def chain(self, grad: Tensor, u: Tensor, alpha: float) -> Tensor:
        """``grad * derivative(u)``, in fewer kernels where the surrogate has a fused form."""
        if self.fused_chain is not None:
            return self.fused_chain(grad, u, alpha)
        return grad * self.derivative(u, alpha)


def _sigmoid_derivative(u: Tensor, alpha: float) -> Tensor:
    # d/du sigmoid(alpha u) = alpha s (1 - s); the reference's choice (alpha = 4).
    s = torch.sigmoid(alpha * u)
    return (1 - s) * s * alpha


def _sigmoid_chain(grad: Tensor, u: Tensor, alpha: float) -> Tensor:
    # aten's sigmoid_backward computes g * s * (1 - s) in one kernel
    return torch.ops.aten.sigmoid_backward(grad * alpha, torch.sigmoid(alpha * u))


def _atan_derivative(u: Tensor, alpha: float) -> Tensor:
    # d/du [atan(pi/2 alpha u) / pi + 1/2] = (alpha / 2) / (1 + (pi/2 alpha u)^2)
    z = u * (math.pi / 2 * alpha)
    return (alpha / 2) / (1 + z * z)


SURROGATES: dict[str, Surrogate] = {
    s.name: s
    for s in (
        Surrogate("sigmoid", 4.0, _sigmoid_derivative, _sigmoid_chain),
        Surrogate("atan", 2.0, _atan_derivative),
    )
}


def get_surrogate(name: str) -> Surrogate:
    """The surrogate called `name`; an unknown name lists the known ones."""
    try:
        return SURROGATES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(SURROGATES))
        raise ConfigError(f"unknown surrogate {name!r}; known surrogates: {known}") from None
