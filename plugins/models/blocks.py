"""Pieces shared by the built-in models: the time-flattened layer wrapper, neurons, readout, checks.

Layout convention (spikingjelly's SeqToANNContainer style): activations travel as ``[T, B, ...]``;
stateless layers (conv, linear, BN, pooling) run on the folded ``[T*B, ...]`` view, neurons on the
time-major one. `Flat` does the folding, so every conv/linear is called as ``layer(x_flat)`` and the
quantizer can swap it for a ``QuantConv2d``/``QuantLinear`` that accepts exactly that layout (B comes
from the model's forward, T is checked there: `tawq_core.nn.time_layout`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from tawq_core import ConfigError, ShapeError, create, mark


class Flat(nn.Sequential):
    """Run stateless layers on ``[T*B, ...]`` and hand back ``[T, B, ...]``."""

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        y = x.flatten(0, 1)
        for layer in self:
            y = layer(y)
        return y.reshape(t, b, *y.shape[1:])


class NeuronFactory:
    """Creates the model's spiking neurons from one plugin name and its options.

    ``overrides`` win over the user's options; the transformers use it for the attention neuron's
    threshold of 0.5.
    """

    def __init__(self, name: str, options: dict[str, Any] | None):
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"neuron_options must be a dict of neuron options, got {options!r}")
        self.name, self.options = name, dict(options or {})
        self()  # fail now, with the plugin's own message, rather than halfway through a build

    def __call__(self, **overrides: Any) -> nn.Module:
        return create("neuron", self.name, **{**self.options, **overrides})


class SpikingClassifier(nn.Module, ABC):
    """Base of every built-in model: checks the input layout and applies the common readout.

    Readout: ``features`` returns ``[T, B, C]`` (already averaged over tokens or space); the logits
    are ``head(mean over T)``, with ``head`` a full-precision linear layer marked "head".
    """

    def __init__(self, name: str, sample_shape: tuple[int, ...], features: int, num_classes: int):
        super().__init__()
        self.model_name, self.sample_shape = name, tuple(sample_shape)
        self.head = mark(nn.Linear(features, num_classes), "head")

    @abstractmethod
    def features(self, x: Tensor) -> Tensor:
        """``[T, B, *sample_shape]`` -> ``[T, B, C]`` pooled features fed to the head."""

    def forward(self, x: Tensor) -> Tensor:
        expected = len(self.sample_shape) + 2
        if x.dim() != expected or tuple(x.shape[2:]) != self.sample_shape:
            raise ShapeError(
                f"model {self.model_name!r} expects [T, B, {', '.join(map(str, self.sample_shape))}], got "
                f"{tuple(x.shape)}; feed time-major batches (tawq_core.encode_batch) of the dataset it was "
                "built for"
            )
        return self.head(self.features(x).mean(0))


# -- option checks: one line saying what is wrong and what to do ------------------------------------------
def positive_int(model: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model {model!r}: {name} must be a positive integer, got {value!r}")
    return value


def positive_ints(model: str, name: str, value: Any, *, min_len: int = 1) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < min_len:
        raise ConfigError(f"model {model!r}: {name} must be a list of at least {min_len} positive integers, "
                          f"got {value!r}")
    return tuple(positive_int(model, name, v) for v in value)


def positive_float(model: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ConfigError(f"model {model!r}: {name} must be a positive number, got {value!r}")
    return float(value)


def check_common(model: str, num_classes: Any, sample_shape: Any) -> tuple[int, tuple[int, ...]]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"model {model!r}: num_classes must be an integer >= 2, got {num_classes!r}")
    try:
        shape = tuple(sample_shape)
    except TypeError:
        shape = ()
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(f"model {model!r}: sample_shape must be positive ints without T and B "
                          f"(e.g. (3, 32, 32)), got {sample_shape!r}")
    return num_classes, shape


def auto_pools(model: str, pools: Any, size: int, limit: int) -> int:
    """How many 2x downsamplings: by default until the token grid is about 8 wide (224 -> 4, 32 -> 2)."""
    if pools is None:
        return max(0, min(limit, int(math.floor(math.log2(size / 8))) if size >= 8 else 0))
    if isinstance(pools, bool) or not isinstance(pools, int) or not 0 <= pools <= limit:
        raise ConfigError(f"model {model!r}: pools must be an integer in 0..{limit}, got {pools!r}")
    return pools


def tokens_mean(x: Tensor) -> Tensor:
    """``[T, B, C, ...]`` -> ``[T, B, C]``: the mean over tokens or space."""
    return x.flatten(3).mean(3) if x.dim() > 3 else x
