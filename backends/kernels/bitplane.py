"""Spikes times bit-plane weights: AND and popcount, integer accumulation, alpha applied afterwards.

Layout (chosen by measurement, see benchmarks/README.md "deployed kernels: what was tried"): every
weight plane is one bit per weight, packed along the receptive field in channels-last order, 32-bit
words, so a conv is the same loop as a linear layer: per output position gather the receptive field's
input bits into a few words, then for every output channel add ``popcount(x & m) - 2·popcount(x & m & s)``.
``s`` is the sign plane (a TaWQ weight's sign never changes over time, so one sign plane serves all T
steps), ``m`` the magnitude planes (per timestep for temporal weights, one per magnitude bit for
multi-level ones). Binary weights have no magnitude plane: ``popcount(x) - 2·popcount(x & s)``.
Input counts above 1 (spikes added by residual connections) are split into bit planes, each run and
shifted. The inner loop runs over output channels (contiguous words), which LLVM vectorizes with the
CPU's vector popcount where it has one. The int32 sum is exact; alpha[t, o] multiplies it once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numba import types
from numba.extending import intrinsic
from torch import Tensor

from tawq_backends.kernels.threads import split_rows
from tawq_core.jit import njit  # cache=True degrades to per-process compilation where nothing is writable

WORD_BITS = 32
MAX_INPUT_PLANES = 8  # inputs are spike counts below 2**8; larger values take the dense path
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@intrinsic
def _popcount(typingctx, x):
    """LLVM ctpop on an integer of any width (numba has no popcount of its own)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return x(x), codegen


@njit(**_JIT)
def _scan(x):
    """(largest value, True if every value is a non-negative integer) of a flat float32 array."""
    largest = np.float32(0.0)
    bad = False
    for i in range(x.size):
        v = x[i]
        bad |= not (v >= 0) or v != np.floor(v)
        largest = max(largest, v)
    return largest, not bad


def scan_counts(x: Tensor) -> int | None:
    """The largest value of `x` if it holds only non-negative integers (spikes, spike counts), else None."""
    largest, ok = _scan(x.detach().reshape(-1).numpy())
    return int(largest) if ok else None


@njit(**_JIT)
def _pack_input(x, planes, groups, slot_bits, chunks, pad_h, pad_w, out):
    """float32 ``[N, C, H, W]`` counts -> ``out[N, planes, H + 2ph, W + 2pw, groups·chunks]`` bits (zeroed)."""
    n_rows, channels, height, width = x.shape
    per_group = channels // groups
    for n in range(n_rows):
        for c in range(channels):
            g = c // per_group
            local = c - g * per_group
            chunk = local // slot_bits
            slot = g * chunks + chunk
            bit = np.uint32(1) << np.uint32(local - chunk * slot_bits)
            for h in range(height):
                for w in range(width):
                    v = np.int64(x[n, c, h, w])
                    if v:
                        for p in range(planes):
                            if (v >> p) & 1:
                                out[n, p, h + pad_h, w + pad_w, slot] |= bit
    return 0


@njit(**_JIT)
def _conv(xb, lo, hi, geometry, slot_bits, chunks, mags, signs, levels, full, step_rows, alpha, bias, has_bias,
          out):
    """Rows [lo, hi) of ``out[N, Co, Ho, Wo]`` from packed input bits ``xb`` (see module docstring)."""
    kh, kw, sh, sw, dh, dw, groups = geometry
    planes = xb.shape[1]
    words = signs.shape[2]
    per_group = signs.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    per_word = WORD_BITS // slot_bits
    rf = np.zeros((planes, words), np.uint32)
    acc = np.zeros(per_group, np.int32)
    for n in range(lo, hi):
        t = n // step_rows
        ts = t if signs.shape[0] > 1 else 0
        ta = t if alpha.shape[0] > 1 else 0
        for oy in range(out_h):
            for ox in range(out_w):
                for g in range(groups):
                    rf[:, :] = 0
                    for ky in range(kh):
                        iy = oy * sh + ky * dh
                        for kx in range(kw):
                            ix = ox * sw + kx * dw
                            for c in range(chunks):
                                idx = (ky * kw + kx) * chunks + c
                                word = idx // per_word
                                shift = np.uint32((idx - word * per_word) * slot_bits)
                                for p in range(planes):
                                    rf[p, word] |= xb[n, p, iy, ix, g * chunks + c] << shift
                    acc[:] = 0
                    for p in range(planes):
                        for j in range(words):
                            xw = rf[p, j]
                            if xw == 0:
                                continue
                            if full:
                                base = np.int32(_popcount(xw))
                                for k in range(per_group):
                                    acc[k] += (base - 2 * np.int32(_popcount(xw & signs[ts, g, j, k]))) << p
                            else:
                                for b in range(levels):
                                    row = t * levels + b
                                    for k in range(per_group):
                                        m = xw & mags[row, g, j, k]
                                        acc[k] += (np.int32(_popcount(m))
                                                   - 2 * np.int32(_popcount(m & signs[ts, g, j, k]))) << (p + b)
                    for k in range(per_group):
                        co = g * per_group + k
                        v = np.float32(acc[k]) * alpha[ta, co]
                        if has_bias:
                            v = v + bias[co]
                        out[n, co, oy, ox] = v
    return 0


@dataclass(frozen=True)
class PlaneLayout:
    """How a receptive field maps to words: ``slot_bits``-wide channel slots, `chunks` per tap, `words` in all."""

    slot_bits: int
    chunks: int
    words: int

    @classmethod
    def of(cls, group_channels: int, taps: int) -> PlaneLayout:
        slot_bits = min(WORD_BITS, 1 << max(0, (group_channels - 1).bit_length()))
        chunks = -(-group_channels // slot_bits)
        per_word = WORD_BITS // slot_bits
        return cls(slot_bits, chunks, -(-taps * chunks // per_word))


def pack_planes(planes: Tensor, groups: int) -> tuple[Tensor, PlaneLayout]:
    """Boolean planes ``[P, Co, Ci/groups, kh, kw]`` -> words ``[P, groups, words, Co/groups]`` (uint32 bits
    held in an int32 tensor: torch has few uint32 ops, the kernel views them as uint32)."""
    count, co, cig, kh, kw = planes.shape
    layout = PlaneLayout.of(cig, kh * kw)
    ci, ky, kx = np.meshgrid(np.arange(cig), np.arange(kh), np.arange(kw), indexing="ij")
    chunk = ci // layout.slot_bits
    idx = (ky * kw + kx) * layout.chunks + chunk
    per_word = WORD_BITS // layout.slot_bits
    position = (idx // per_word) * WORD_BITS + (idx % per_word) * layout.slot_bits + ci % layout.slot_bits
    dense = np.zeros((count, co, layout.words * WORD_BITS), dtype=bool)
    dense[:, :, position.reshape(-1)] = planes.reshape(count, co, -1).numpy()
    words = np.packbits(dense, axis=2, bitorder="little").view("<u4").astype(np.uint32)
    words = words.reshape(count, groups, co // groups, layout.words).transpose(0, 1, 3, 2)
    return torch.from_numpy(np.ascontiguousarray(words).view(np.int32)), layout


def conv(x: Tensor, counts: int, geometry: tuple[int, ...], padding: tuple[int, int], layout: PlaneLayout,
         mags: Tensor, signs: Tensor, levels: int, step_rows: int, alpha: Tensor, bias: Tensor | None) -> Tensor:
    """``conv(x, q) * alpha + bias`` for float32 ``x [N, C, H, W]`` holding counts <= `counts` (see `scan_counts`)."""
    kh, kw, sh, sw, dh, dw, groups = geometry
    n_rows, _, height, width = x.shape
    planes = max(1, counts.bit_length())
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h = (padded_h - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded_w - dw * (kw - 1) - 1) // sw + 1
    co = signs.shape[1] * signs.shape[3]
    xb = np.zeros((n_rows, planes, padded_h, padded_w, groups * layout.chunks), np.uint32)
    _pack_input(x.detach().contiguous().numpy(), planes, groups, layout.slot_bits, layout.chunks,
                padding[0], padding[1], xb)
    out = torch.empty(n_rows, co, out_h, out_w, dtype=torch.float32)
    args = (tuple(int(v) for v in geometry), layout.slot_bits, layout.chunks, mags.numpy().view(np.uint32),
            signs.numpy().view(np.uint32), levels,
            mags.shape[0] == 0, step_rows, alpha.numpy(),
            (bias if bias is not None else alpha[0]).numpy(), bias is not None, out.numpy())
    split_rows(lambda lo, hi: _conv(xb, lo, hi, *args), n_rows, out_h * out_w * co * layout.words * planes)
    return out
