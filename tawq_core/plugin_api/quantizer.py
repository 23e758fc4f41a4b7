"""The quantizer interface and the packed-weight container.

A quantizer turns one latent full-precision weight tensor into the *effective* weights a layer uses.
Temporal quantizers (TaWQ) return one weight set per timestep, ``[T, *w.shape]``; static ones return
``w.shape``. `pack` gives the exact bytes used for export and for the memory column, so storage is
measured from real bytes rather than declared.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch
from torch import Tensor

from tawq_core.plugin_api.errors import ConfigError, ShapeError
from tawq_core.validators import check_int_at_least


class QuantMode(str, Enum):
    """How a quantizer obtains its weights: trained with it (QAT), fitted after training (PTQ), or not."""

    QAT = "qat"
    PTQ = "ptq"
    NONE = "none"


@dataclass(frozen=True)
class PackedWeight:
    """The stored form of one quantized weight tensor.

    ``payload`` holds the integer codes (the part that scales with the number of weights), ``scales``
    the small side tables (alpha per timestep and channel, int8 scales...). ``bits_per_weight`` is
    computed from the payload's actual bytes; ``bits_per_weight_total`` adds the side tables.
    """

    quantizer: str
    shape: tuple[int, ...]
    timesteps: int
    payload: dict[str, Tensor]
    scales: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.shape or any(int(s) <= 0 for s in self.shape):
            raise ConfigError(f"PackedWeight shape must be non-empty and positive, got {self.shape}")
        if self.timesteps < 1:
            raise ConfigError(f"PackedWeight timesteps must be >= 1, got {self.timesteps}")
        for key, t in {**self.payload, **self.scales}.items():
            if not isinstance(t, Tensor):
                raise ConfigError(f"PackedWeight entry {key!r} must be a torch.Tensor, got {type(t).__name__}")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def payload_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.payload.values())

    @property
    def scale_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.scales.values())

    @property
    def nbytes(self) -> int:
        return self.payload_bytes + self.scale_bytes

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.payload_bytes / self.numel

    @property
    def bits_per_weight_total(self) -> float:
        return 8.0 * self.nbytes / self.numel


class Quantizer(ABC):
    """Maps a latent weight to effective weights; one instance may serve many layers.

    Implementations must keep no state between calls of `weights` (every forward starts fresh), and
    `unpack(pack(w, T))` must equal ``weights(w, T)`` bit-exactly in eval mode.

    Per-layer state (calibration statistics) has its home on the layer, not on the shared instance:
    `init_state` declares it, the quantized layer holds it as buffers (so state dicts, checkpoints and
    packed files carry it), `calibrate` updates it, and a quantizer with state receives the layer's
    as ``state=`` (a name -> tensor dict) in `weights` and `pack`. Stateless quantizers keep the
    two-argument signatures.
    """

    name: ClassVar[str] = ""
    mode: ClassVar[QuantMode] = QuantMode.NONE
    #: True when `weights` returns one weight set per timestep, ``[T, *w.shape]``.
    temporal: ClassVar[bool] = False

    @abstractmethod
    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        """Effective weights: ``[T, *w.shape]`` if `temporal`, else ``w.shape``. Differentiable for QAT."""

    def init_state(self, w: Tensor) -> dict[str, Tensor]:
        """The per-layer state for a layer whose latent weight has `w`'s shape, dtype and device, at its
        uncalibrated value; names must be valid identifiers. Default: none (a stateless quantizer)."""
        return {}

    def calibrate(self, state: dict[str, Tensor], w: Tensor, x: Tensor) -> None:  # noqa: B027 - optional hook
        """Update one layer's `state` in place from one calibration batch (PTQ): `x` is the input the layer
        received, `w` its latent weight. `tawq_core.calibrate` calls it per layer and batch, in order.
        Default: nothing to fit."""

    @abstractmethod
    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        """The storage form of ``weights(w, timesteps)``."""

    @abstractmethod
    def unpack(self, packed: PackedWeight) -> Tensor:
        """Rebuild the effective weights from `pack`'s output, bit-exactly."""

    def check_packed(self, packed: PackedWeight) -> str | None:
        """Why `packed` (read back from a file anyone can edit) cannot be this quantizer's `pack` output, as one
        phrase, or None. `load_packed` calls it before `unpack`, which trusts its input: codes outside the code
        set or a changed dtype would unpack into other weights without an error. The default checks what
        holds for every quantizer (floating-point entries are finite); override it to add your code set,
        dtypes and sizes (the building blocks are in `tawq_core.nn.packed_checks`)."""
        from tawq_core.nn.packed_checks import finite

        return finite(packed)

    def config(self) -> dict[str, Any]:
        """Options that identify this quantizer's behaviour (recorded with every result)."""
        return {"name": self.name, "mode": self.mode.value, "temporal": self.temporal}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


def with_state(state: dict[str, Tensor]) -> dict[str, Any]:
    """The keyword arguments that hand a layer's quantizer state to `weights` / `pack`: none when the
    quantizer is stateless, so its two-argument signatures stay valid."""
    return {"state": state} if state else {}


def check_timesteps(timesteps: int) -> int:
    """Validate a timestep count once, with a message a user can act on."""
    return check_int_at_least("timesteps", timesteps, 1)


def float32_weights(w: Tensor) -> Tensor:
    """Quantizer maths runs in float32 even under autocast: fp16 rounding flips thresholds."""
    return w.float() if w.dtype != torch.float32 else w


def fan_in_dims(w: Tensor) -> tuple[int, ...]:
    """The dims a per-output-channel statistic reduces over (all but dim 0); weights must be >= 2-D."""
    if w.dim() < 2:
        raise ShapeError(f"per-output-channel quantization needs a weight of >= 2 dims, got {tuple(w.shape)}")
    return tuple(range(1, w.dim()))


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: Tensor, w_q: Tensor) -> Tensor:
        return w_q

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def straight_through(w: Tensor, w_q: Tensor) -> Tensor:
    """Forward exactly `w_q` (so packing stays bit-exact); backward the gradient straight to `w` (STE)."""
    return _StraightThrough.apply(w, w_q.detach())
