"""The neuron interface: multi-step spiking modules on ``[T, B, ...]``.

State (membrane potential) starts fresh on every forward call, so nothing leaks between batches and
there is no reset ritual to forget. Surrogate gradients make the spike function trainable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from tawq_core.errors import ShapeError


class Neuron(nn.Module, ABC):
    """A multi-step spiking neuron: input current ``[T, B, ...]`` -> spikes of the same shape."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Run all T steps from a fresh state and return the spike train."""


def check_multistep(x: Tensor, who: str = "neuron") -> None:
    """Reject inputs that are not time-major ``[T, B, ...]`` with a clear message."""
    if x.dim() < 2:
        raise ShapeError(
            f"{who} expects a time-major tensor [T, B, ...], got shape {tuple(x.shape)}; "
            "repeat static inputs over T (tawq_core.encode_batch) first"
        )
