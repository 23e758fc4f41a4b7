"""Integer codes and scales of the built-in quantizers, read straight from a `PackedWeight`.

The deployed kernels need the weights as integers q (``[Tw, *shape]``, Tw = T for temporal quantizers,
1 for static ones) and one float scale per (weight step, output channel), so that a layer computes
``conv(x, q) * alpha`` with an exact integer sum. Each built-in quantizer stores exactly that, in its own
layout; this module decodes it without ever forming the float effective weights. A quantizer not listed
here (a third-party plugin) has no integer form tawq knows of and deploys through the unpack fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tawq_core.nn.packing import unpack_digits, unpack_patterns
from tawq_core.plugin_api.quantizer import PackedWeight


@dataclass(frozen=True)
class IntegerWeights:
    """q ``[Tw, *shape]`` int8 and alpha ``[Tw, Co]`` float32: effective weight = alpha[t, o] * q[t, o, ...]."""

    q: Tensor
    alpha: Tensor

    @property
    def temporal(self) -> bool:
        return self.q.shape[0] > 1


def _calcium(packed: PackedWeight) -> IntegerWeights:
    q = unpack_patterns(packed.payload["patterns"], packed.scales["codebook"], packed.shape)
    return IntegerWeights(q.to(torch.int8), packed.scales["alpha"].to(torch.float32).reshape(packed.timesteps, -1))


def _per_channel(q: Tensor, alpha: Tensor) -> IntegerWeights:
    return IntegerWeights(q.to(torch.int8).unsqueeze(0), alpha.to(torch.float32).reshape(1, -1))


def _ternary(packed: PackedWeight) -> IntegerWeights:
    trits = unpack_digits(packed.payload["trits"], 3, packed.numel) - 1
    return _per_channel(trits.reshape(packed.shape), packed.scales["alpha"])


def _binary(packed: PackedWeight) -> IntegerWeights:
    bits = unpack_digits(packed.payload["signs"], 2, packed.numel)
    return _per_channel((2 * bits - 1).reshape(packed.shape), packed.scales["alpha"])


def _ptq8(packed: PackedWeight) -> IntegerWeights:
    return _per_channel(packed.payload["codes"].reshape(packed.shape), packed.scales["scale"])


#: quantizer name -> (payload keys, scale keys, decoder); the built-in quantizers' storage layouts.
_DECODERS = {
    "tawq": ({"patterns"}, {"alpha", "codebook"}, _calcium),
    "mtawq": ({"patterns"}, {"alpha", "codebook"}, _calcium),
    "ternary": ({"trits"}, {"alpha"}, _ternary),
    "binary": ({"signs"}, {"alpha"}, _binary),
    "ptq8": ({"codes"}, {"scale"}, _ptq8),
}


def integer_weights(packed: PackedWeight, builtin: bool) -> IntegerWeights | None:
    """The integer form of `packed`, or None when its quantizer is not a built-in one with a known layout.

    `builtin` says the quantizer object is tawq's own class of that name (a plugin may reuse a name).
    """
    entry = _DECODERS.get(packed.quantizer)
    if not builtin or entry is None:
        return None
    payload_keys, scale_keys, decode = entry
    if set(packed.payload) != payload_keys or set(packed.scales) != scale_keys:
        return None
    return decode(packed)


def is_builtin(quantizer: object) -> bool:
    """True for the quantizer classes shipped in tawq_plugins.quantizers (their layouts are decoded above)."""
    return type(quantizer).__module__.startswith("tawq_plugins.quantizers.")
