"""Fused CPU kernels (numba) for the ternary calcium dynamics, alpha and their backward.

On CPU the eager `calcium.run_dynamics` plus `CalciumQuant`'s backward cost ~30 tensor passes and two
gathers per layer per training step: ~6 ms for a 128x128x3 conv weight, as much as the convolution
itself, which put TaWQ training at 1.5-1.6x the fp32 step time. Here one compiled loop per output
channel runs the T calcium steps for its fan-in (the level in a cache-resident buffer), counts the
non-zeros, writes alpha[t, o] and the effective weights alpha·q; the backward reruns the dynamics
(cheaper than storing q and the slopes) and applies the same hand-derived gradient as `CalciumQuant`:
through q (sigmoid-4 surrogate, BPTT over the detached reset) and through alpha. The standardization
stays in PyTorch autograd (its statistics must be PyTorch's, bit for bit).

Same float32 operations in the same order as the eager path, so q, alpha and the effective weights are
bit-identical to it (pinned by tests); gradients agree to float rounding. Ternary (``levels = 1``)
float32 CPU weights only; anything else, or ``TAWQ_QUANT_KERNEL=torch``, uses the eager path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}
_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_P = tuple(_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                           1.6666665459e-1, 5.0000001201e-1))
_EXP_MIN, _EXP_MAX = _F(-87.0), _F(88.0)
PARALLEL_MIN = 1 << 15  # weights below which a second thread costs more than it gives

try:
    from numba import njit
except Exception as exc:  # an absent or broken numba simply means the eager path is used
    njit = None
    UNAVAILABLE = f"numba could not be imported ({type(exc).__name__}: {exc})"
else:
    UNAVAILABLE = ""

    @njit(**_JIT)
    def _forward(x, out, alpha, lo, hi, steps, tau, theta, eps, one):
        """Rows [lo, hi) of x [Co, F]: out [T, Co, F] = alpha[t, o] * q[t, o, :], alpha [T, Co]."""
        zero = one - one
        fan_in = x.shape[1]
        fan = np.float32(fan_in)
        c = np.empty(fan_in, dtype=np.float32)
        for o in range(lo, hi):
            xs = x[o]
            for i in range(fan_in):
                c[i] = zero
            for t in range(steps):
                row = out[t, o]
                count = 0
                for i in range(fan_in):
                    u = c[i] + (xs[i] - c[i]) / tau
                    q = (one if u > theta else zero) - (one if u < -theta else zero)
                    row[i] = q
                    count += 1 if q != zero else 0
                    c[i] = u if q == zero else zero
                a = one / (np.float32(count) / fan + eps)
                alpha[t, o] = a
                for i in range(fan_in):
                    row[i] = a * row[i]
        return 0

    @njit(inline="always", **_JIT)
    def _exp_parts(w, one):
        """exp(w) = poly * 2^n (Cephes' expf, ~1 ulp): float arithmetic only, so loops vectorize."""
        w = min(max(w, _EXP_MIN), _EXP_MAX)
        n = np.floor(w * _LOG2E + one / (one + one))
        r = w - n * _LN2_HI - n * _LN2_LO
        p0, p1, p2, p3, p4, p5 = _P
        poly = (((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5) * (r * r) + r + one
        return poly, (np.int32(n) + np.int32(127)) << np.int32(23)

    @njit(**_JIT)
    def _backward(x, grad, alpha, grad_x, lo, hi, steps, tau, theta, slope_a, one):
        """dL/dx for rows [lo, hi): through q (surrogate, BPTT with the detached reset) and through alpha."""
        zero = one - one
        half = one / (one + one)
        keep = one - one / tau
        inv_tau = one / tau
        fan_in = x.shape[1]
        fan = np.float32(fan_in)
        c = np.empty(fan_in, dtype=np.float32)
        since = np.empty(fan_in, dtype=np.float32)
        acc = np.empty(fan_in, dtype=np.float32)
        level = np.empty(fan_in, dtype=np.float32)
        poly_low = np.empty(fan_in, dtype=np.float32)
        poly_high = np.empty(fan_in, dtype=np.float32)
        bits_low = np.empty(fan_in, dtype=np.int32)
        bits_high = np.empty(fan_in, dtype=np.int32)
        pow2_low = bits_low.view(np.float32)
        pow2_high = bits_high.view(np.float32)
        g_alpha = np.empty(steps, dtype=np.float32)
        for o in range(lo, hi):
            xs = x[o]
            # pass 1: g_alpha[t] = mean over the fan-in of grad * q
            for i in range(fan_in):
                c[i] = zero
            for t in range(steps):
                gs = grad[t, o]
                total = zero
                for i in range(fan_in):
                    u = c[i] + (xs[i] - c[i]) / tau
                    q = (one if u > theta else zero) - (one if u < -theta else zero)
                    total += gs[i] * q
                    c[i] = u if q == zero else zero
                g_alpha[t] = total / fan
            # pass 2: dL/dx = sum_t (grad·a - g_alpha·a²·q) · dq/du · du/dx, dq/du = the two sigmoid-4 bumps
            for i in range(fan_in):
                c[i] = zero
                since[i] = zero
                acc[i] = zero
            for t in range(steps):
                for i in range(fan_in):
                    u = c[i] + (xs[i] - c[i]) / tau
                    level[i] = u
                    poly_low[i], bits_low[i] = _exp_parts(-(slope_a * (u - theta)), one)
                    poly_high[i], bits_high[i] = _exp_parts(-(slope_a * (u + theta)), one)
                    c[i] = zero if u > theta or u < -theta else u
                gs = grad[t, o]
                a = alpha[t, o]
                drop = g_alpha[t] * a * a
                for i in range(fan_in):
                    u = level[i]
                    q = (one if u > theta else zero) - (one if u < -theta else zero)
                    s_low = one / (one + poly_low[i] * pow2_low[i])
                    s_high = one / (one + poly_high[i] * pow2_high[i])
                    bumps = half * slope_a * (s_low * (one - s_low) + s_high * (one - s_high))
                    grown = since[i] * keep + inv_tau
                    acc[i] += (gs[i] * a - drop * q) * (bumps * grown)
                    since[i] = grown if q == zero else zero
            gx = grad_x[o]
            for i in range(fan_in):
                gx[i] = acc[i]
        return 0


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _split(kernel: Any, arrays: tuple, rows: int, weights: int, scalars: tuple) -> None:
    """Run `kernel` over output-channel ranges, on ``torch.get_num_threads()`` threads when it pays."""
    global _POOL
    workers = min(torch.get_num_threads(), rows, max(1, weights // PARALLEL_MIN))
    if workers <= 1:
        kernel(*arrays, 0, rows, *scalars)
        return
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < workers - 1:
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="tawq-quant"))
    edges = [rows * w // workers for w in range(workers + 1)]
    futures = [_POOL[1].submit(kernel, *arrays, edges[w], edges[w + 1], *scalars) for w in range(1, workers)]
    kernel(*arrays, edges[0], edges[1], *scalars)
    for f in futures:
        f.result()


def unsupported(x: Tensor, levels: int) -> str:
    """Why the fused CPU kernels cannot run on `x` ('' if they can)."""
    if os.environ.get("TAWQ_QUANT_KERNEL", "auto").lower() == "torch":
        return "TAWQ_QUANT_KERNEL=torch"
    if UNAVAILABLE:
        return UNAVAILABLE
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return f"the CPU kernel needs float32 CPU weights, got {x.dtype} on {x.device}"
    if levels != 1:
        return "the CPU kernel is ternary only (levels = 1)"
    if x.dim() < 1 or x.numel() == 0:
        return "empty weight"
    return ""


class CalciumQuantCPU(torch.autograd.Function):
    """Standardized weights ``x [Co, ...]`` -> effective weights ``[T, Co, ...]`` (ternary), fused on CPU."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, timesteps: int, tau: float, theta: float, eps: float, slope: float) -> Tensor:
        x2 = x.detach().contiguous().reshape(x.shape[0], -1)
        out = torch.empty(timesteps, *x2.shape, dtype=torch.float32)
        alpha = torch.empty(timesteps, x2.shape[0], dtype=torch.float32)
        f = np.float32
        _split(_forward, (x2.numpy(), out.numpy(), alpha.numpy()), x2.shape[0], x2.numel(),
               (timesteps, f(tau), f(theta), f(eps), f(1.0)))
        ctx.save_for_backward(x2, alpha)
        ctx.constants = (timesteps, f(tau), f(theta), f(slope), f(1.0))
        ctx.shape = x.shape
        return out.reshape(timesteps, *x.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        x2, alpha = ctx.saved_tensors
        steps = ctx.constants[0]
        grad = grad.detach().contiguous().reshape(steps, *x2.shape)
        grad_x = torch.empty_like(x2)
        _split(_backward, (x2.numpy(), grad.numpy(), alpha.numpy(), grad_x.numpy()), x2.shape[0], x2.numel(),
               ctx.constants)
        return grad_x.reshape(ctx.shape), None, None, None, None, None
