"""CUDA kernel for deployed bit-plane layers (Triton): int8 spikes times weights decoded from bit planes in
registers, exact int32 sums, one float scale per (weight step, output channel).

The resident weights are the same bit planes the CPU kernels read (`tawq_backends.kernels.bitplane`): a
sign plane and magnitude planes, 64 weights per int64 word per output channel. Each program decodes one
word per output channel of its tile into a ``[64, BLOCK_N]`` int8 tile (shifts and masks, never stored)
and multiplies it with a ``[BLOCK_M, 64]`` tile of int8 input rows (``tl.dot`` with int32 accumulation:
tensor-core IMMA on GPUs that have it). The sum is converted once and scaled, ``float32(acc) · alpha
(+ bias)``, compiled without FMA contraction so that it rounds exactly as the fp32 reference
``conv(x, q) · alpha + bias`` does (two roundings), which is what keeps spikes bit-identical.

Convolutions reach it as rows of unfolded input (`torch.nn.functional.unfold`, in int8), one call per
weight step and group. Triton's interpreter (``TRITON_INTERPRET=1``) runs the same kernel on CPU tensors;
the tests use it, as a stand-in for a GPU, at tiny shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    import triton
    import triton.language as tl
except Exception as exc:  # noqa: BLE001 - any import failure means "no Triton kernels here"
    UNAVAILABLE = f"triton could not be imported ({type(exc).__name__}: {exc})"
else:
    UNAVAILABLE = ""

KERNEL = "cuda.triton-bitplane"
BLOCK_M, BLOCK_N = 32, 32

if not UNAVAILABLE:

    @triton.jit
    def _bitplane_mm(x_ptr, sign_ptr, mag_ptr, alpha_ptr, bias_ptr, out_ptr, rows, cols, fan_in, words,
                     LEVELS: tl.constexpr, HAS_BIAS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
        """``out[rows, cols] = float32(x[rows, fan_in] · q[cols, fan_in]ᵀ) · alpha[cols] (+ bias)``."""
        rm = tl.program_id(0) * BM + tl.arange(0, BM)
        rn = tl.program_id(1) * BN + tl.arange(0, BN)
        bit = tl.arange(0, 64).to(tl.int64)
        acc = tl.zeros((BM, BN), dtype=tl.int32)
        for j in range(0, words):
            k = j * 64 + tl.arange(0, 64)
            x = tl.load(x_ptr + rm[:, None] * fan_in + k[None, :], mask=(rm[:, None] < rows) & (k[None, :] < fan_in),
                        other=0)
            sign = tl.load(sign_ptr + rn * words + j, mask=rn < cols, other=0)
            negative = ((sign[None, :] >> bit[:, None]) & 1) != 0  # [64, BN]
            if LEVELS == 0:
                w = tl.where(negative, -1, 1)
            else:
                magnitude = tl.zeros((64, BN), dtype=tl.int64)
                for b in tl.static_range(LEVELS):
                    plane = tl.load(mag_ptr + (b * cols + rn) * words + j, mask=rn < cols, other=0)
                    magnitude += ((plane[None, :] >> bit[:, None]) & 1) << b
                w = tl.where(negative, -magnitude, magnitude)
            acc += tl.dot(x, w.to(tl.int8), out_dtype=tl.int32)
        y = acc.to(tl.float32) * tl.load(alpha_ptr + rn, mask=rn < cols, other=0.0)[None, :]
        if HAS_BIAS:
            y = y + tl.load(bias_ptr + rn, mask=rn < cols, other=0.0)[None, :]
        tl.store(out_ptr + rm[:, None] * cols + rn[None, :], y, mask=(rm[:, None] < rows) & (rn[None, :] < cols))


def int8_valued(x: Tensor) -> bool:
    """Whether every value of `x` is an integer in int8 range (spikes, spike counts): the input the integer
    kernels take. An int8 round trip changes any other value (NaN included), so one comparison decides."""
    return torch.equal(x, x.to(torch.int8).to(x.dtype))


def matmul(x8: Tensor, signs: Tensor, mags: Tensor, alpha: Tensor, bias: Tensor | None) -> Tensor:
    """int8 rows ``[M, K]`` times the bit-plane weights ``signs [Co, words]``, ``mags [levels, Co, words]``:
    float32 ``[M, Co]``, scaled by ``alpha [Co]`` (+ ``bias``)."""
    rows, fan_in = x8.shape
    cols, words = signs.shape
    out = torch.empty(rows, cols, dtype=torch.float32, device=x8.device)
    grid = (triton.cdiv(rows, BLOCK_M), triton.cdiv(cols, BLOCK_N))
    _bitplane_mm[grid](x8.contiguous(), signs.contiguous(), mags.contiguous(), alpha.contiguous(),
                       (bias if bias is not None else alpha).contiguous(), out, rows, cols, fan_in, words,
                       LEVELS=mags.shape[0], HAS_BIAS=bias is not None, BM=BLOCK_M, BN=BLOCK_N,
                       enable_fp_fusion=False)
    return out


def conv(x: Tensor, geometry: tuple[int, ...], padding: tuple[int, int], step_rows: int, first_step: int,
         steps: int, planes: Callable[[int], tuple[Tensor, Tensor]], alpha: Tensor,
         bias: Tensor | None) -> Tensor | None:
    """``conv(x, q_t) · alpha[t] + bias`` for 2-D-view input ``x [N, C, H, W]`` on the GPU, or None when x
    holds anything but integers in int8 range; ``planes(t)`` gives step t's (signs, mags) words."""
    kh, kw, sh, sw, dh, dw, groups = geometry
    n, channels, height, width = x.shape
    out_h = (height + 2 * padding[0] - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * padding[1] - dw * (kw - 1) - 1) // sw + 1
    if not int8_valued(x):
        return None
    x8 = x.to(torch.int8)
    # unfold in float16 (exact for |v| <= 2048, half the traffic of float32), rows = output positions
    cols = F.unfold(x8.to(torch.float16 if x.is_cuda else torch.float32), (kh, kw), (dh, dw), padding, (sh, sw))
    cols = cols.to(torch.int8).transpose(1, 2)  # [N, Ho·Wo, C·kh·kw]
    co = alpha.shape[1]
    per_in, per_out = channels // groups * kh * kw, co // groups
    out = torch.empty(n, out_h * out_w, co, dtype=torch.float32, device=x.device)
    for i in range(n // step_rows if steps > 1 else 1):
        t = first_step + i if steps > 1 else 0
        signs, mags = planes(t)
        lo, hi = (i * step_rows, (i + 1) * step_rows) if steps > 1 else (0, n)
        for g in range(groups):
            rows = cols[lo:hi, :, g * per_in:(g + 1) * per_in].reshape(-1, per_in)
            o = slice(g * per_out, (g + 1) * per_out)
            out[lo:hi, :, o] = matmul(rows, signs[o], mags[:, o], alpha[t, o],
                                      None if bias is None else bias[o]).reshape(hi - lo, out_h * out_w, -1)
    return out.transpose(1, 2).reshape(n, co, out_h, out_w)
