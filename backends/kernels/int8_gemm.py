"""Integer convolution and linear layers: int8 spikes times int8 weights, exact int32 sums.

Spike-fed layers see {0, 1} spikes or small spike counts (residual additions), so the input is exactly an
int8 tensor; quantized weights are small integers (ternary, TaWQ levels, int8 codes). A layer is then
integer matrix products, ``torch._int_mm`` (oneDNN; VNNI dot products where the CPU has them), with no
float arithmetic until the exact int32 sum is scaled once, ``acc · alpha[t, o] + bias[o]``: the same two
float32 roundings as the fp32 reference ``conv(x, q) · alpha + bias``, so the result equals it bit for bit
(the sums stay far below 2^24). Convolutions stay in NCHW: per sample, weights ``[Co, C·kh·kw]`` times the
unfolded input ``[C·kh·kw, Ho·Wo]`` gives ``[Co, Ho·Wo]`` directly, so no pass transposes anything; linear
layers are one product over all rows of a timestep. See benchmarks/README.md for what was tried before.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from tawq_core.plugin import njit  # cache=True degrades to per-process compilation where nothing is writable

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
#: up to this many output positions per sample, all samples of a step form one product (rows = positions;
#: one call instead of one per sample); above it, one product per sample in NCHW order (no transposes)
ROW_PRODUCT_POSITIONS = 256


@njit(**_JIT)
def _to_int8(x, pad_h, pad_w, out):
    """float32 ``x [N, C, H, W]`` -> int8 ``out[N, C, H + 2ph, W + 2pw]`` (border zeroed by the caller);
    False (out unusable) when a value is not an integer in [-128, 127]."""
    n_rows, channels, height, width = x.shape
    bad = False
    for n in range(n_rows):
        for c in range(channels):
            for h in range(height):
                for w in range(width):
                    v = x[n, c, h, w]
                    bad |= not (-128.0 <= v <= 127.0) or v != np.float32(np.int32(v))
                    out[n, c, h + pad_h, w + pad_w] = np.int8(np.int32(v)) if -128.0 <= v <= 127.0 else 0
        if bad:
            return False
    return True


@njit(**_JIT)
def _scale(acc, alpha, bias, has_bias, out):
    """``out[o, p] = float32(acc[o, p]) · alpha[o] (+ bias[o])``: two float32 roundings, as the reference."""
    for o in range(acc.shape[0]):
        a = alpha[o]
        b = bias[o]
        for p in range(acc.shape[1]):
            v = np.float32(acc[o, p]) * a
            out[o, p] = v + b if has_bias else v
    return 0


@njit(**_JIT)
def _scale_rows(acc, alpha, bias, has_bias, out):
    """``out[n, o, p] = float32(acc[n·P + p, o]) · alpha[o] (+ bias[o])`` for row-ordered sums."""
    n_rows, co, positions = out.shape
    for n in range(n_rows):
        for p in range(positions):
            for o in range(co):
                v = np.float32(acc[n * positions + p, o]) * alpha[o]
                out[n, o, p] = v + bias[o] if has_bias else v
    return 0


def int8_input(x: Tensor, padding: tuple[int, int]) -> Tensor | None:
    """float32 ``[N, C, H, W]`` -> zero-padded int8 ``[N, C, Hp, Wp]`` when every value is an integer in int8
    range (spikes, spike counts), else None."""
    n, c, h, w = x.shape
    make = torch.zeros if padding != (0, 0) else torch.empty
    out = make(n, c, h + 2 * padding[0], w + 2 * padding[1], dtype=torch.int8)
    return out if _to_int8(x.detach().contiguous().numpy(), padding[0], padding[1], out.numpy()) else None


def unfold(x: Tensor, geometry: tuple[int, ...]) -> tuple[Tensor, int, int]:
    """Padded int8 ``[N, C, Hp, Wp]`` -> (columns ``[N, C·kh·kw, Ho·Wo]`` in weight order, Ho, Wo)."""
    kh, kw, sh, sw, dh, dw, _ = geometry
    n, c, h, w = x.shape
    out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    if kh == kw == sh == sw == 1:
        return x.reshape(n, c, h * w), out_h, out_w
    s_n, s_c, s_h, s_w = x.stride()
    patches = x.as_strided((n, c, kh, kw, out_h, out_w), (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    return patches.reshape(n, c * kh * kw, out_h * out_w), out_h, out_w


def conv(x: Tensor, geometry: tuple[int, ...], step_rows: int, first_step: int, steps: int,
         weights: Callable[[int], Tensor], scale: Tensor, bias: Tensor | None) -> Tensor:
    """``conv(x, q_t) · scale[t] + bias`` for `int8_input`'s ``x``; sample n uses weight step
    ``first_step + n // step_rows`` (`steps` > 1) or 0. ``weights(t)`` gives int8 ``[Co, C/g·kh·kw]``."""
    groups = geometry[6]
    n = x.shape[0]
    cols, out_h, out_w = unfold(x, geometry)
    co = scale.shape[1]
    out = torch.empty(n, co, out_h * out_w, dtype=torch.float32)
    bias_or_any = bias if bias is not None else scale[0]
    per_out, per_in = co // groups, cols.shape[1] // groups
    for i in range(n // step_rows if steps > 1 else 1):
        t = first_step + i if steps > 1 else 0
        w = weights(t)
        rows = range(i * step_rows, (i + 1) * step_rows) if steps > 1 else range(n)
        if out_h * out_w <= ROW_PRODUCT_POSITIONS and groups == 1:  # one product for all samples' positions
            part = cols[rows.start:rows.stop]
            acc = torch._int_mm(part.transpose(1, 2).reshape(-1, part.shape[1]), w.t())
            _scale_rows(acc.numpy(), scale[t].numpy(), bias_or_any.numpy(), bias is not None,
                        out[rows.start:rows.stop].numpy())
            continue
        for r in rows:
            for g in range(groups):
                acc = torch._int_mm(w[g * per_out:(g + 1) * per_out], cols[r, g * per_in:(g + 1) * per_in])
                _scale(acc.numpy(), scale[t, g * per_out:].numpy(), bias_or_any[g * per_out:].numpy(),
                       bias is not None, out[r, g * per_out:(g + 1) * per_out].numpy())
    return out.reshape(n, co, out_h, out_w)
