"""Bit-plane weight storage: 1 bit per weight per plane resident, int8 rebuilt for one timestep on use.

A weight with at most 2^L - 1 levels is a sign plane plus L magnitude planes. A TaWQ weight's sign never
changes over time (only whether it is zero), so one sign plane serves all T steps and a ternary TaWQ
layer holds T + 1 bits per weight; static ternary 2, binary 1 (sign only). Each output channel's plane is
its fan-in's bits back to back in torch's weight order, in 64-bit words, so `expand` writes the int8
weight rows ``[Co, Ci/g·kh·kw]`` that `tawq_backends.kernels.int8_gemm` consumes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tawq_core.plugin import njit  # cache=True degrades to per-process compilation where nothing is writable

WORD_BITS = 64
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


def words_for(fan_in: int) -> int:
    """64-bit words per output channel and plane."""
    return -(-fan_in // WORD_BITS)


def pack_planes(planes: Tensor) -> Tensor:
    """Boolean planes ``[P, Co, K]`` (K = fan-in in weight order) -> words ``[P, Co, words]``: bit k of an
    output channel's string is weight k. uint64 bits held in an int64 tensor (torch has few uint64 ops)."""
    count, co, fan_in = planes.shape
    dense = np.zeros((count, co, words_for(fan_in) * WORD_BITS), dtype=bool)
    dense[:, :, :fan_in] = planes.numpy()
    packed = np.packbits(dense, axis=2, bitorder="little").view("<u8")
    return torch.from_numpy(np.ascontiguousarray(packed).view(np.int64))


def unpack_planes(words: Tensor, fan_in: int) -> Tensor:
    """Inverse of `pack_planes`: bool ``[P, Co, K]``."""
    raw = np.ascontiguousarray(words.cpu().numpy())
    bits = np.unpackbits(raw.view(np.uint8), axis=2, bitorder="little")[:, :, :fan_in]
    return torch.from_numpy(bits.astype(bool))


def _byte_spread() -> np.ndarray:
    """``table[b]``: the 8 bits of byte b spread to 8 bytes, 0xFF where the bit is set, 0x00 where not."""
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
    return np.ascontiguousarray((bits * 0xFF).astype(np.uint8)).view("<u8").reshape(256)


SPREAD = _byte_spread()


def _expand(signs, mags, levels, spread, out):
    """int8 weights, 8 per uint64 word of ``out[Co, words·8]`` = (1 - 2·sign) · Σ_b 2^b·mag_b, from uint64
    words ``[Co, words]`` (signs) and ``[levels, Co, words]`` (magnitudes; none at all for ±1 weights).
    SIMD within a register: each input byte becomes 8 output bytes through one table lookup, and a
    negative byte is ``0 - M`` computed bytewise without borrows (magnitudes stay below 128). Measured
    7x faster than writing bit by bit on an 800x784 plane (one thread)."""
    ones = np.uint64(0x0101010101010101)
    high = np.uint64(0x8080808080808080)
    byte = np.uint64(0xFF)
    for o in range(signs.shape[0]):
        for j in range(signs.shape[1]):
            s = signs[o, j]
            for k in range(8):
                shift = np.uint64(8 * k)
                negative = spread[(s >> shift) & byte]
                if levels == 0:
                    out[o, j * 8 + k] = negative | ones  # 0xFF = -1 where the sign bit is set, else 0x01
                    continue
                m = np.uint64(0)
                for b in range(levels):
                    m |= (spread[(mags[b, o, j] >> shift) & byte] & ones) << np.uint64(b)
                minus = (high - m) ^ (~m & high)  # bytewise 0 - m
                out[o, j * 8 + k] = (minus & negative) | (m & ~negative)
    return 0


_compiled_expand = njit(**_JIT)(_expand) if njit is not None else None


def expand(signs: Tensor, mags: Tensor, fan_in: int) -> Tensor:
    """int8 ``[Co, K]`` from one step's sign words ``[Co, words]`` and magnitude words ``[levels, Co, words]``
    (numpy's bit unpacking where numba is missing: slower, same values)."""
    if _compiled_expand is None:
        magnitude = torch.ones(signs.shape[0], fan_in, dtype=torch.int8)
        if mags.shape[0]:
            bits = unpack_planes(mags, fan_in).to(torch.int8)
            magnitude = sum(bits[b] << b for b in range(mags.shape[0]))
        negative = unpack_planes(signs.unsqueeze(0), fan_in)[0]
        return torch.where(negative, -magnitude, magnitude).to(torch.int8)
    out = torch.empty(signs.shape[0], signs.shape[1] * WORD_BITS, dtype=torch.int8)
    _compiled_expand(signs.numpy().view(np.uint64), mags.numpy().view(np.uint64), mags.shape[0], SPREAD,
                     out.numpy().view(np.uint64))
    return out[:, :fan_in]  # rows padded to whole words: a strided view, which torch._int_mm accepts
