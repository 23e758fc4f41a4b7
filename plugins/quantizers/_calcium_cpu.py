"""Fused CPU kernel (numba) for the calcium dynamics: q, the charged levels and the steps since reset.

On CPU the eager `calcium.run_dynamics` builds the reset-free trajectory, the firing periods and two
gathers: ~20 tensor passes per layer per training step, the largest part of TaWQ's overhead over fp32
training (a 128x128x3 conv weight took ~6 ms for the quantizer, as much as its convolution). Here one
compiled loop walks the T calcium steps of every weight (blocks of weights in step) and writes q_t,
the charged level u_t and the steps since the last reset; alpha, the effective weights and the
surrogate slopes are then the eager path's own tensor expressions on those values, and the backward is
`CalciumQuant`'s. The loop is the spec's step-by-step recursion, which the eager closed form equals bit
for bit, so every output (effective weights, gradients) is bit-identical to the eager path (pinned by
tests; `mtawq` at 2 bits, which runs eagerly, must equal `tawq` exactly).

Float32 CPU weights; anything else, or ``TAWQ_QUANT_KERNEL=torch``, uses the eager path.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tawq_core.plugin import UNAVAILABLE, njit, worker_pool  # njit is None without numba: the eager path is used
from tawq_plugins.quantizers.calcium import ALPHA_EPS, TAU, THETA, CalciumQuant, effective, fan_in_mean, surrogate

BLOCK = 2048  # weights stepped together
PARALLEL_MIN = 1 << 16  # weights x steps below which a second thread costs more than it gives

if njit is not None:
    @njit(nogil=True, cache=True, error_model="numpy")
    def _dynamics(x, q, level, since, lo, hi, steps, levels, tau, theta, one):
        """Weights [lo, hi) of x: q[t], the charged level u[t] and steps since reset (as float) per step.

        Blocks of weights step through time together (level and count in small buffers), so the inner
        loops run over contiguous weights and vectorize.
        """
        zero = one - one
        two = one + one
        c = np.empty(BLOCK, dtype=np.float32)
        quiet = np.empty(BLOCK, dtype=np.float32)
        for start in range(lo, hi, BLOCK):
            m = min(BLOCK, hi - start)
            xs = x[start:start + m]
            for j in range(m):
                c[j] = zero
                quiet[j] = zero
            for t in range(steps):
                qs, us, ss = q[t, start:start + m], level[t, start:start + m], since[t, start:start + m]
                if levels == 1:
                    for j in range(m):
                        u = c[j] + (xs[j] - c[j]) / tau
                        fired = (one if u > theta else zero) - (one if u < -theta else zero)
                        qs[j] = fired
                        us[j] = u
                        ss[j] = quiet[j]
                        c[j] = u if fired == zero else zero
                        quiet[j] = quiet[j] + one if fired == zero else zero
                else:
                    for j in range(m):
                        u = c[j] + (xs[j] - c[j]) / tau
                        fired = zero
                        for k in range(levels):
                            th = (two * k + one) * theta
                            fired += (one if u > th else zero) - (one if u < -th else zero)
                        qs[j] = fired
                        us[j] = u
                        ss[j] = quiet[j]
                        c[j] = u if fired == zero else zero
                        quiet[j] = quiet[j] + one if fired == zero else zero
        return 0


def _split(arrays: tuple, n: int, steps: int, scalars: tuple) -> None:
    """Run the kernel over weight ranges, on ``torch.get_num_threads()`` threads when it pays."""
    workers = min(torch.get_num_threads(), max(1, n * steps // PARALLEL_MIN))
    if workers <= 1:
        _dynamics(*arrays, 0, n, steps, *scalars)
        return
    pool = worker_pool(workers - 1)
    edges = [n * w // workers for w in range(workers + 1)]
    futures = [pool.submit(_dynamics, *arrays, edges[w], edges[w + 1], steps, *scalars) for w in range(1, workers)]
    _dynamics(*arrays, edges[0], edges[1], steps, *scalars)
    for f in futures:
        f.result()


def unsupported(x: Tensor) -> str:
    """Why the fused CPU kernel cannot run on `x` ('' if it can)."""
    if os.environ.get("TAWQ_QUANT_KERNEL", "auto").lower() == "torch":
        return "TAWQ_QUANT_KERNEL=torch"
    if UNAVAILABLE:
        return UNAVAILABLE
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return f"the CPU kernel needs float32 CPU weights, got {x.dtype} on {x.device}"
    return ""


def run_dynamics(x: Tensor, timesteps: int, levels: int, jacobian: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """`calcium.run_dynamics` on CPU: (q, alpha, d q / d x or None), bit-identical to the eager path."""
    flat = x.detach().contiguous().reshape(-1)
    q = torch.empty(timesteps, *x.shape, dtype=torch.float32)
    level = torch.empty_like(q)
    since = torch.empty_like(q)
    f = np.float32
    _split((flat.numpy(), q.view(timesteps, -1).numpy(), level.view(timesteps, -1).numpy(),
            since.view(timesteps, -1).numpy()), flat.numel(), timesteps, (levels, f(TAU), f(THETA), f(1.0)))
    alpha = 1.0 / (fan_in_mean(q.abs()) + ALPHA_EPS)
    if not jacobian:
        return q, alpha, None
    # the eager path's expressions on the same values: d U[j] / d x = 1 - (1 - 1/tau)^(j + 1), times the bumps
    slopes = 1 - torch.exp((since + 1) * math.log(1 - 1 / TAU))
    return q, alpha, surrogate(level, levels).mul_(slopes)


class CalciumQuantCPU(CalciumQuant):
    """`CalciumQuant` with the dynamics of its forward run by the fused CPU kernel (same backward)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, timesteps: int, levels: int) -> Tensor:
        q, alpha, slopes = run_dynamics(x, timesteps, levels, jacobian=ctx.needs_input_grad[0])
        ctx.save_for_backward(q, alpha, slopes)
        ctx.levels = levels
        return effective(alpha, q)
