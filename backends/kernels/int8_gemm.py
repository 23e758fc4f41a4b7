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
#: one call instead of one per sample); above it, and for 1x1 convs (whose input needs no unfolding),
#: one product per sample in NCHW order (no transposes)
#: columns per product in `conv_batched`: oneDNN ran [384x384]·[384x4096] 2.3x slower than the same work
#: as products of 512-2048 columns (1 thread); whole samples per product, at least one
BATCHED_COLUMNS = 2048
ROW_PRODUCT_POSITIONS = 48  # measured: L=40 conv1d rows 1.5x faster than per-sample; 8x8 maps per-sample 1.8x


@njit(**_JIT)
def _to_int8(x, pad_h, pad_w, channel_major, out):
    """float32 ``x [N, C, H, W]`` -> int8 ``out[N, C, Hp, Wp]`` (``[C, N, Hp, Wp]`` if `channel_major`; border
    zeroed by the caller); False (out unusable) when a value is not an integer in [-128, 127]. Branch-free
    per row, so it vectorizes: out-of-range and NaN values become 0.5 before the conversion and are caught
    by the round-trip comparison."""
    n_rows, channels, height, width = x.shape
    bad = False
    for n in range(n_rows):
        for c in range(channels):
            for h in range(height):
                src = x[n, c, h]
                dst = out[c, n, h + pad_h] if channel_major else out[n, c, h + pad_h]
                for w in range(width):
                    v = src[w]
                    kept = v if -128.0 <= v <= 127.0 else np.float32(0.5)
                    code = np.int32(kept)
                    bad |= np.float32(code) != v
                    dst[w + pad_w] = np.int8(code)
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


def int8_input(x: Tensor, padding: tuple[int, int], channel_major: bool) -> Tensor | None:
    """float32 ``[N, C, H, W]`` -> zero-padded int8 ``[N, C, Hp, Wp]`` (or ``[C, N, Hp, Wp]`` with
    `channel_major`) when every value is an integer in int8 range (spikes, spike counts), else None."""
    n, c, h, w = x.shape
    make = torch.zeros if padding != (0, 0) else torch.empty
    shape = (c, n) if channel_major else (n, c)
    out = make(*shape, h + 2 * padding[0], w + 2 * padding[1], dtype=torch.int8)
    ok = _to_int8(x.detach().contiguous().numpy(), padding[0], padding[1], channel_major, out.numpy())
    return out if ok else None


def batched(geometry: tuple[int, ...]) -> bool:
    """Whether `conv_batched` serves this geometry (stride 1, no groups): most layers of the built-in nets."""
    return geometry[2] == geometry[3] == 1 and geometry[6] == 1


@njit(**_JIT)
def _unfold_batched(x, kh, kw, dh, dw, out):
    """Channel-major padded int8 ``x [C, N, Hp, Wp]`` -> ``out[C·kh·kw, N·Hp·Wp]``, every sample at the padded
    size: each (channel, tap) is ONE contiguous run of the input shifted by the tap's offset. Positions
    outside the valid Ho x Wo window of a sample read neighbouring rows or samples; they are dropped."""
    channels, total = x.shape[0], x.shape[1] * x.shape[2] * x.shape[3]
    width = x.shape[3]
    src, dst = x.reshape(-1), out.reshape(-1)
    for c in range(channels):
        for ky in range(kh):
            for kx in range(kw):
                offset = ky * dh * width + kx * dw
                d0 = ((c * kh + ky) * kw + kx) * total
                dst[d0:d0 + total - offset] = src[c * total + offset:(c + 1) * total]
                dst[d0 + total - offset:d0 + total] = 0
    return 0


@njit(**_JIT)
def _scale_window(acc, alpha, bias, has_bias, height, width, out):
    """Sums ``acc[Co, B·Hp·Wp]`` (`_unfold_batched` positions) -> ``out[B, Co, Ho, Wo]`` = float32(sum) ·
    alpha (+ bias), the valid window of every sample only; the same two roundings as the reference."""
    n_rows, co, out_h, out_w = out.shape
    for n in range(n_rows):
        for o in range(co):
            a = alpha[o]
            b = bias[o]
            for oy in range(out_h):
                base = (n * height + oy) * width
                for ox in range(out_w):
                    v = np.float32(acc[o, base + ox]) * a
                    out[n, o, oy, ox] = v + b if has_bias else v
    return 0


def conv_batched(x: Tensor, geometry: tuple[int, ...], out_hw: tuple[int, int], step_rows: int,
                 first_step: int, steps: int, weights: Callable[[int], Tensor], scale: Tensor,
                 bias: Tensor | None) -> Tensor:
    """Stride-1 ungrouped ``conv(x, q_t) · scale[t] + bias`` for channel-major `int8_input` ``x [C, N, Hp, Wp]``:
    one product per weight step over all its samples' positions (1x1 convs and linear layers: the input
    itself is the column matrix)."""
    kh, kw, _, _, dh, dw, _ = geometry
    channels, n, height, width = x.shape
    if kh == kw == 1:
        cols = x.reshape(channels, n * height * width)
    else:
        cols = torch.empty(channels * kh * kw, n * height * width, dtype=torch.int8)
        _unfold_batched(x.numpy(), kh, kw, dh, dw, cols.numpy())
    co = scale.shape[1]
    out = torch.empty(n, co, out_hw[0], out_hw[1], dtype=torch.float32)
    bias_or_any = bias if bias is not None else scale[0]
    blocks = n // step_rows if steps > 1 else 1
    span = (n // blocks) * height * width
    chunk = max(1, BATCHED_COLUMNS // (height * width)) * height * width  # whole samples per product
    for i in range(blocks):
        t = first_step + i if steps > 1 else 0
        w = weights(t)
        for start in range(i * span, (i + 1) * span, chunk):
            stop = min(start + chunk, (i + 1) * span)
            acc = torch._int_mm(w, cols[:, start:stop])
            first = start // (height * width)
            _scale_window(acc.numpy(), scale[t].numpy(), bias_or_any.numpy(), bias is not None, height, width,
                          out[first:first + (stop - start) // (height * width)].numpy())
    return out


@njit(**_JIT)
def _unfold_columns(x, kh, kw, sh, sw, dh, dw, out):
    """Padded int8 ``x [N, C, Hp, Wp]`` -> ``out[N, K, P]``, K in weight order (c, ky, kx), P = oy·Wo + ox.
    Flat offsets, unit-stride inner copies (torch's strided int8 copy of the as_strided view, and numba
    array views per row, were several times slower)."""
    n_rows, channels, height, width = x.shape
    out_h = (height - dh * (kh - 1) - 1) // sh + 1
    out_w = (width - dw * (kw - 1) - 1) // sw + 1
    src, dst = x.reshape(-1), out.reshape(-1)
    positions = out_h * out_w
    for n in range(n_rows):
        for c in range(channels):
            plane = (n * channels + c) * height * width
            for ky in range(kh):
                for kx in range(kw):
                    row = (n * channels * kh * kw + (c * kh + ky) * kw + kx) * positions
                    for oy in range(out_h):
                        s0 = plane + (oy * sh + ky * dh) * width + kx * dw
                        d0 = row + oy * out_w
                        if sw == 1:
                            dst[d0:d0 + out_w] = src[s0:s0 + out_w]
                        else:
                            for ox in range(out_w):
                                dst[d0 + ox] = src[s0 + ox * sw]
    return 0


@njit(**_JIT)
def _unfold_wide(x, kh, kw, dh, dw, out):
    """Stride-1 unfolding at the padded width: ``out[N, K, Ho·Wp]``, position oy·Wp + ox (ox < Wo valid, the
    rest discarded by `_scale_wide`). Each (c, ky, kx) is then ONE contiguous run of the input, copied in one
    go, instead of Ho runs of Wo bytes (per-run overhead dominated the row-by-row copy)."""
    n_rows, channels, height, width = x.shape
    out_h = height - dh * (kh - 1)
    out_w = width - dw * (kw - 1)
    length = (out_h - 1) * width + out_w  # the last row's padding columns would read past the plane
    src, dst = x.reshape(-1), out.reshape(-1)
    positions = out_h * width
    for n in range(n_rows):
        for c in range(channels):
            plane = (n * channels + c) * height * width
            for ky in range(kh):
                for kx in range(kw):
                    d0 = (n * channels * kh * kw + (c * kh + ky) * kw + kx) * positions
                    s0 = plane + ky * dh * width + kx * dw
                    dst[d0:d0 + length] = src[s0:s0 + length]
    return 0


@njit(**_JIT)
def _scale_wide(acc, alpha, bias, has_bias, width, out):
    """`_scale` for `_unfold_wide` sums ``[Co, Ho·Wp]``: keeps ox < Wo of every row, ``out[Co, Ho·Wo]``."""
    out_w = out.shape[1] // (acc.shape[1] // width)
    for o in range(acc.shape[0]):
        a = alpha[o]
        b = bias[o]
        for oy in range(acc.shape[1] // width):
            for ox in range(out_w):
                v = np.float32(acc[o, oy * width + ox]) * a
                out[o, oy * out_w + ox] = v + b if has_bias else v
    return 0


@njit(**_JIT)
def _unfold_rows(x, kh, kw, sh, sw, dh, dw, out):
    """Padded int8 ``x [N, C, Hp, Wp]`` -> ``out[N·P, K]`` (one product for all positions of all samples)."""
    out_h = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    for n in range(x.shape[0]):
        for oy in range(out_h):
            for ox in range(out_w):
                dst = out[(n * out_h + oy) * out_w + ox]
                for c in range(x.shape[1]):
                    for ky in range(kh):
                        src = x[n, c, oy * sh + ky * dh]
                        for kx in range(kw):
                            dst[(c * kh + ky) * kw + kx] = src[ox * sw + kx * dw]
    return 0


def unfold(x: Tensor, geometry: tuple[int, ...], rows: bool) -> tuple[Tensor, int, int]:
    """Padded int8 ``[N, C, Hp, Wp]`` -> (columns ``[N, C·kh·kw, Ho·Wo]``, or ``[N·Ho·Wo, C·kh·kw]`` with
    `rows`, in weight order; Ho, Wo)."""
    kh, kw, sh, sw, dh, dw, _ = geometry
    n, c, h, w = x.shape
    out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    if kh == kw == sh == sw == 1 and (not rows or h * w == 1):
        return x.reshape(n, c, h * w) if not rows else x.reshape(n, c), out_h, out_w
    shape = (n * out_h * out_w, c * kh * kw) if rows else (n, c * kh * kw, out_h * out_w)
    out = torch.empty(shape, dtype=torch.int8)
    (_unfold_rows if rows else _unfold_columns)(x.numpy(), kh, kw, sh, sw, dh, dw, out.numpy())
    return out, out_h, out_w


def conv(x: Tensor, geometry: tuple[int, ...], step_rows: int, first_step: int, steps: int,
         weights: Callable[[int], Tensor], scale: Tensor, bias: Tensor | None) -> Tensor:
    """``conv(x, q_t) · scale[t] + bias`` for `int8_input`'s ``x``; sample n uses weight step
    ``first_step + n // step_rows`` (`steps` > 1) or 0. ``weights(t)`` gives int8 ``[Co, C/g·kh·kw]``."""
    groups = geometry[6]
    n = x.shape[0]
    kh, kw, sh, sw, dh, dw, _ = geometry
    positions = ((x.shape[2] - dh * (kh - 1) - 1) // sh + 1) * ((x.shape[3] - dw * (kw - 1) - 1) // sw + 1)
    pointwise = kh == kw == sh == sw == 1  # the input already is the columns: never copy it
    by_rows = positions <= ROW_PRODUCT_POSITIONS and groups == 1 and (not pointwise or positions == 1)
    wide = not by_rows and not pointwise and sh == sw == 1
    if wide:
        out_h, out_w = x.shape[2] - dh * (kh - 1), x.shape[3] - dw * (kw - 1)
        cols = torch.empty(n, x.shape[1] * kh * kw, out_h * x.shape[3], dtype=torch.int8)
        _unfold_wide(x.numpy(), kh, kw, dh, dw, cols.numpy())
    else:
        cols, out_h, out_w = unfold(x, geometry, by_rows)
    co = scale.shape[1]
    out = torch.empty(n, co, out_h * out_w, dtype=torch.float32)
    bias_or_any = bias if bias is not None else scale[0]
    per_out, per_in = co // groups, (cols.shape[1] // groups) if not by_rows else 0
    for i in range(n // step_rows if steps > 1 else 1):
        t = first_step + i if steps > 1 else 0
        w = weights(t)
        rows = range(i * step_rows, (i + 1) * step_rows) if steps > 1 else range(n)
        if by_rows:  # one product for all samples' positions
            acc = torch._int_mm(cols[rows.start * positions:rows.stop * positions], w.t())
            _scale_rows(acc.numpy(), scale[t].numpy(), bias_or_any.numpy(), bias is not None,
                        out[rows.start:rows.stop].numpy())
            continue
        for r in rows:
            for g in range(groups):
                acc = torch._int_mm(w[g * per_out:(g + 1) * per_out], cols[r, g * per_in:(g + 1) * per_in])
                args = (scale[t, g * per_out:].numpy(), bias_or_any[g * per_out:].numpy(), bias is not None)
                target = out[r, g * per_out:(g + 1) * per_out].numpy()
                if wide:
                    _scale_wide(acc.numpy(), *args, x.shape[3], target)
                else:
                    _scale(acc.numpy(), *args, target)
    return out.reshape(n, co, out_h, out_w)
