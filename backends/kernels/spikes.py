"""Spike-driven accumulation: for every active input, add its weight column (int8 or float32) to the outputs.

Used for int8 weights (ptq8: int8 codes, int32 sums, the per-channel scale applied once afterwards) and
for the fp32 'spike-driven' reference row (float32 columns, float32 sums), so the matrix separates what
skipping silent inputs buys from what low bits buy. Per output position, the active input channels of
each receptive-field pixel (listed once per forward) select weight columns ``[Co]`` stored contiguously
(``[Tw, taps, Ci/groups, Co]``), which the inner loop adds with vector instructions. Work scales with
the firing rate. Input counts above 1 multiply their column (an integer product for int8 weights).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tawq_backends.kernels.threads import split_rows
from tawq_core.plugin import njit  # cache=True degrades to per-process compilation where nothing is writable

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _active(x, pad_h, pad_w, values, index, count):
    """Per padded pixel of channels-last float32 ``x [N, H, W, C]``: its non-zero channels (index, count)
    and their values (in `values`' dtype). Returns False when an input is not a non-negative integer."""
    n_rows, height, width, channels = x.shape
    for n in range(n_rows):
        for h in range(height):
            for w in range(width):
                found = 0
                for c in range(channels):
                    v = x[n, h, w, c]
                    if v != 0:
                        if not (v > 0) or v != np.floor(v):
                            return False
                        index[n, h + pad_h, w + pad_w, found] = c
                        values[n, h + pad_h, w + pad_w, found] = v
                        found += 1
                count[n, h + pad_h, w + pad_w] = found
    return True


@njit(**_JIT)
def _conv(values, index, count, lo, hi, geometry, weight, step_rows, first_step, scale, bias, has_bias, acc, out):
    """Rows [lo, hi) of ``out[N, Co, Ho, Wo]``; `acc` is a length-Co scratch row of the accumulator dtype
    (one per call, so every thread has its own)."""
    kh, kw, sh, sw, dh, dw, groups = geometry
    per_group_in = weight.shape[2]
    co = weight.shape[3]
    per_group = co // groups
    out_h, out_w = out.shape[2], out.shape[3]
    for n in range(lo, hi):
        t = first_step + n // step_rows
        tw = t if weight.shape[0] > 1 else 0
        ts = t if scale.shape[0] > 1 else 0
        for oy in range(out_h):
            for ox in range(out_w):
                acc[:] = 0
                for ky in range(kh):
                    iy = oy * sh + ky * dh
                    for kx in range(kw):
                        ix = ox * sw + kx * dw
                        tap = ky * kw + kx
                        for a in range(count[n, iy, ix]):
                            c = index[n, iy, ix, a]
                            v = values[n, iy, ix, a]
                            g = c // per_group_in
                            column = weight[tw, tap, c - g * per_group_in]
                            start = g * per_group
                            if v == 1:
                                for k in range(start, start + per_group):
                                    acc[k] += column[k]
                            else:
                                for k in range(start, start + per_group):
                                    acc[k] += v * column[k]
                for k in range(co):
                    r = np.float32(acc[k]) * scale[ts, k]
                    if has_bias:
                        r = r + bias[k]
                    out[n, k, oy, ox] = r
    return 0


def conv(x: Tensor, geometry: tuple[int, ...], padding: tuple[int, int], weight: Tensor, step_rows: int,
         first_step: int, scale: Tensor, bias: Tensor | None) -> Tensor | None:
    """``conv(x, w) * scale + bias`` over the active inputs of float32 ``x [N, C, H, W]``; None when x holds
    anything but non-negative integers (the caller then takes its dense path). `weight` is int8 (int32
    sums) or float32 (float32 sums), laid out ``[Tw, kh·kw, C/groups, Co]``; row n uses weight step
    ``first_step + n // step_rows``."""
    kh, kw, sh, sw, dh, dw, groups = geometry
    n_rows, channels, height, width = x.shape
    padded_h, padded_w = height + 2 * padding[0], width + 2 * padding[1]
    out_h = (padded_h - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded_w - dw * (kw - 1) - 1) // sw + 1
    acc_dtype = np.int32 if weight.dtype == torch.int8 else np.float32
    values = np.zeros((n_rows, padded_h, padded_w, channels), acc_dtype)
    index = np.zeros((n_rows, padded_h, padded_w, channels), np.int32)
    count = np.zeros((n_rows, padded_h, padded_w), np.int32)
    if not _active(x.detach().permute(0, 2, 3, 1).contiguous().numpy(), padding[0], padding[1], values, index,
                   count):
        return None
    co = weight.shape[3]
    out = torch.empty(n_rows, co, out_h, out_w, dtype=torch.float32)
    args = (tuple(int(v) for v in geometry), weight.numpy(), step_rows, first_step, scale.numpy(),
            (bias if bias is not None else scale[0]).numpy(), bias is not None)
    split_rows(lambda lo, hi: _conv(values, index, count, lo, hi, *args, np.zeros(co, acc_dtype), out.numpy()),
               n_rows, out_h * out_w * co * max(1, int(count.mean() * kh * kw)))
    return out
