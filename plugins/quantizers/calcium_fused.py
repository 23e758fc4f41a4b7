"""Fused GPU kernel (Triton) for the calcium dynamics: one launch for all T steps of every weight.

The eager `run_dynamics` needs a few dozen tensor operations per layer per forward; on a GPU each is a
kernel launch, and with ~20 quantized layers the launches, not the arithmetic, set the step time. Here
one program walks the T steps of a block of weights with the calcium level in registers and writes
q_t and, when gradients are needed, d q_t / d x. Same equations and operation order as the eager path,
IEEE division and no FMA contraction, so q equals the eager q bit for bit (pinned by the CUDA tests);
the surrogate slopes agree to float rounding. That equality needs a power-of-two tau: PyTorch divides a
CUDA tensor by a scalar as a multiplication by 1/tau, which equals the kernel's division only when 1/tau
is exact, so `run` refuses any other tau in one line rather than drift silently.

Used automatically for float32 CUDA tensors when Triton imports; ``TAWQ_QUANT_KERNEL=torch`` forces
the eager path.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from tawq_core import ConfigError
from tawq_plugins.device_guard import on_device_of

BLOCK = 1024

try:
    import triton
    import triton.language as tl
except Exception as exc:  # an absent or broken Triton simply means the eager path is used
    triton = None
    UNAVAILABLE = f"triton could not be imported ({type(exc).__name__}: {exc})"
else:
    UNAVAILABLE = ""

    @triton.jit(do_not_specialize=["n", "steps"])
    def _calcium_kernel(x_ptr, q_ptr, slope_ptr, n, steps, tau, keep_rate, inv_tau, theta, slope_a,
                        LEVELS: tl.constexpr, JACOBIAN: tl.constexpr, BLOCK_SIZE: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0)
        c = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        since = tl.zeros([BLOCK_SIZE], dtype=tl.float32)  # d c / d x under the detached reset
        for t in range(steps):
            u = c + tl.math.div_rn(x - c, tau)
            q = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
            bumps = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
            for k in tl.static_range(LEVELS):
                th = (2 * k + 1) * theta
                q += (u > th).to(tl.float32) - (u < -th).to(tl.float32)
                if JACOBIAN:
                    s_low = tl.sigmoid(slope_a * (u - th))
                    s_high = tl.sigmoid(slope_a * (u + th))
                    bumps += 0.5 * slope_a * (s_low * (1 - s_low) + s_high * (1 - s_high))
            at = offs + n.to(tl.int64) * t
            tl.store(q_ptr + at, q, mask=mask)
            fired = q != 0
            if JACOBIAN:
                since = since * keep_rate + inv_tau
                tl.store(slope_ptr + at, bumps * since, mask=mask)
                since = tl.where(fired, 0.0, since)
            c = tl.where(fired, 0.0, u)


def unsupported(x: Tensor) -> str:
    """Why the fused kernel cannot run on `x` ('' if it can)."""
    if os.environ.get("TAWQ_QUANT_KERNEL", "auto").lower() == "torch":
        return "TAWQ_QUANT_KERNEL=torch"
    if UNAVAILABLE:
        return UNAVAILABLE
    if not x.is_cuda:
        return "tensor is not on a CUDA device"
    if x.dtype != torch.float32:
        return f"the calcium kernel runs in float32, got {x.dtype}"
    return ""


def run(x: Tensor, timesteps: int, levels: int, jacobian: bool, tau: float, theta: float,
        slope: float) -> tuple[Tensor, Tensor | None]:
    """(q ``[T, *x.shape]``, d q / d x or None), computed by one kernel launch."""
    if math.frexp(tau)[0] != 0.5:  # not a power of two: a * (1/tau) != a / tau for some a
        raise ConfigError(f"the calcium Triton kernel needs a power-of-two tau to match the eager path bit for "
                          f"bit, got {tau}; use a power-of-two tau or set TAWQ_QUANT_KERNEL=torch")
    x = x.contiguous()
    n = x.numel()
    q = torch.empty(timesteps, *x.shape, dtype=torch.float32, device=x.device)
    slopes = torch.empty_like(q) if jacobian else q
    with on_device_of(x):
        _calcium_kernel[(math.ceil(n / BLOCK),)](x, q, slopes, n, timesteps, tau, 1 - 1 / tau, 1 / tau, theta,
                                                 slope, LEVELS=levels, JACOBIAN=jacobian, BLOCK_SIZE=BLOCK,
                                                 enable_fp_fusion=False)
    return q, (slopes if jacobian else None)
