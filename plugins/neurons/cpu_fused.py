"""Fused CPU kernels (numba) for the multi-step dynamics: one pass over memory for all T steps.

The eager loop in `tawq_plugins.neurons.dynamics` runs ~6 tensor operations per timestep forward and
~8 backward, each a full pass over memory; on CPU the neuron layers of a conv net are memory-bound, so
that loop, not the convolutions, dominated training. Here compiled loops walk blocks of neurons through
the T steps with the membrane in a small buffer that stays in cache: the forward reads x once and
writes the spikes; the backward reads x and dL/ds once, rebuilds ``h`` for its block in cache and
writes dL/dx. So the forward never writes ``h``, and autograd keeps x (which it would otherwise free)
instead of a new tensor. Same equations and operation order as the eager loop, IEEE division and no
FMA contraction: spikes and ``h`` equal the eager path bit for bit (pinned by tests); gradients agree
to float rounding (the sigmoid's exp here is Cephes' expf, not PyTorch's vectorized one).

The constants and branch selectors come from the layer's `NeuronDynamics` (`leak_id`, `reset_value`,
`kernel_k`...), whose `charge`/`fire`/`reset` `_step` restates. They are runtime arguments, written
branch-free (both sides computed, one selected), so one compiled kernel per dtype serves every neuron
configuration: compiling per configuration made a fresh test run compile for minutes. numba caches the
machine code next to this file (`tawq_core.jit`: where no cache folder is writable, the kernels compile
in each process instead).

Threads: numba's own parallel layers are not fork-safe with GNU OpenMP and would compete with
PyTorch's thread pool, so the kernels release the GIL and a small thread pool (one per process,
``torch.get_num_threads()`` wide) runs contiguous ranges of neurons; small tensors run inline.

Used automatically for float32/float64 CPU tensors when numba imports (tawq's dependencies bring it
through librosa); ``TAWQ_NEURON_KERNEL=torch`` forces the eager loop.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
import torch
from torch import Tensor

from tawq_core.plugin import UNAVAILABLE, NeuronDynamics, njit, worker_pool  # njit is None without numba: eager loop
from tawq_plugins.neurons.dynamics import Leak

SURROGATE_IDS = {"sigmoid": 0, "atan": 1}
BLOCK = 1024  # neurons per block: membranes, carries and the block's T charged values stay in L1/L2
PARALLEL_MIN = 1 << 16  # elements (T * neurons) below which threads cost more than they give
DTYPES = (torch.float32, torch.float64)

# Cephes' expf: exp(w) = 2^n * p(r), r = w - n ln 2, evaluated with float arithmetic and an integer shift
# for 2^n, so the float32 backward loop vectorizes (a libm exp call would not); error about 1 ulp.
_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_P = tuple(_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                           1.6666665459e-1, 5.0000001201e-1))
_EXP_MIN, _EXP_MAX = _F(-87.0), _F(88.0)
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}

if njit is not None:
    @njit(inline="always", **_JIT)
    def _step(v, x, k, v_threshold, v_reset, rest, leak, decay_input, hard):
        """One timestep of one neuron: (charged h, membrane after the reset), in the eager loop's op order."""
        shifted = v - rest
        drive = x - shifted if decay_input else shifted
        scaled = drive / k if leak == 1 else drive * k
        h = v + x if leak == 0 else (v + scaled if decay_input else (v - scaled) + x)
        after = v_reset if hard else h - v_threshold
        return h, (after if h >= v_threshold else h)

    @njit(**_JIT)
    def _forward(x, spikes, charged, n, lo, hi, steps, k, v_threshold, v_reset, rest, one, leak, decay_input,
                 hard, keep_h):
        zero = one - one
        v = np.empty(BLOCK, dtype=x.dtype)
        for start in range(lo, hi, BLOCK):
            m = min(BLOCK, hi - start)
            for j in range(m):
                v[j] = rest
            for t in range(steps):
                at = t * n + start
                xs, ss, cs = x[at:at + m], spikes[at:at + m], charged[at:at + m]
                if keep_h:
                    for j in range(m):
                        h, v[j] = _step(v[j], xs[j], k, v_threshold, v_reset, rest, leak, decay_input, hard)
                        cs[j] = h
                        ss[j] = one if h >= v_threshold else zero
                else:
                    for j in range(m):
                        h, v[j] = _step(v[j], xs[j], k, v_threshold, v_reset, rest, leak, decay_input, hard)
                        ss[j] = one if h >= v_threshold else zero
        return 0.0


@cache
def _backward_kernel(need_k: bool, fast_exp: bool):
    """BPTT from the input x; ``h`` is rebuilt per block. Compiled per (need_k, fast_exp = float32)."""
    p0, p1, p2, p3, p4, p5 = _P

    @njit(**_JIT)
    def backward(grad_s, x, grad_x, n, lo, hi, steps, k, v_threshold, v_reset, rest, one, alpha, half_pi_alpha,
                 leak, decay_input, hard, detach, surrogate):
        zero = one - one
        half = one / (one + one)
        half_alpha = alpha * half
        carry = np.empty(BLOCK, dtype=x.dtype)
        exps = np.empty(BLOCK, dtype=x.dtype)
        pow2_bits = np.empty(BLOCK, dtype=np.int32)
        pow2 = pow2_bits.view(np.float32)
        local = np.empty(steps * BLOCK, dtype=x.dtype)
        grad_k = 0.0
        for start in range(lo, hi, BLOCK):
            m = min(BLOCK, hi - start)
            for j in range(m):
                carry[j] = rest  # the membrane while h is rebuilt, then BPTT's carry
            for t in range(steps):
                xs, hs = x[t * n + start:t * n + start + m], local[t * m:t * m + m]
                for j in range(m):
                    hs[j], carry[j] = _step(carry[j], xs[j], k, v_threshold, v_reset, rest, leak, decay_input, hard)
            for j in range(m):
                carry[j] = zero
            for i in range(steps):
                t = steps - 1 - i
                at = t * n + start
                hs, gs, gx = local[t * m:t * m + m], grad_s[at:at + m], grad_x[at:at + m]
                if surrogate == 0:  # exp(-alpha u), as pow2 * poly (float32) or np.exp
                    for j in range(m):
                        w = -(alpha * (hs[j] - v_threshold))
                        if fast_exp:
                            w = min(max(w, _EXP_MIN), _EXP_MAX)
                            e = np.floor(w * _LOG2E + half)
                            r = w - e * _LN2_HI - e * _LN2_LO
                            exps[j] = (((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5) * (r * r) + r + one
                            pow2_bits[j] = (np.int32(e) + np.int32(127)) << np.int32(23)
                        else:
                            exps[j] = np.exp(w)
                for j in range(m):
                    h = hs[j]
                    u = h - v_threshold
                    sig = one / (one + (exps[j] * pow2[j] if fast_exp else exps[j]))
                    z = u * half_pi_alpha
                    slope = (one - sig) * sig * alpha if surrogate == 0 else half_alpha / (one + z * z)
                    # d v_after / d h: 1 - s for a hard reset, 1 for a soft one, plus the spike's surrogate
                    # term when the reset is not detached
                    if hard:
                        through = (zero if h >= v_threshold else one) + (zero if detach else (v_reset - h) * slope)
                    else:
                        through = one if detach else one - v_threshold * slope
                    grad_h = gs[j] * slope + carry[j] * through
                    scaled = grad_h / k if leak == 1 else grad_h * k
                    gx[j] = grad_h if leak == 0 or not decay_input else scaled
                    carry[j] = grad_h if leak == 0 else grad_h - scaled
                    if need_k:
                        v_prev = rest
                        if t > 0:
                            hp = local[(t - 1) * m + j]
                            v_prev = (v_reset if hard else hp - v_threshold) if hp >= v_threshold else hp
                        if decay_input:
                            grad_k += grad_h * (x[at + j] - (v_prev - rest))
                        else:
                            grad_k += grad_h * (rest - v_prev)
        return grad_k

    return backward


def _split(kernel, arrays: tuple, n: int, steps: int, scalars: tuple) -> float:
    """Sum of `kernel` over neuron ranges [lo, hi), split over ``torch.get_num_threads()`` threads when it pays."""
    workers = min(torch.get_num_threads(), max(1, n * steps // PARALLEL_MIN), -(-n // BLOCK))
    if workers <= 1:
        return kernel(*arrays, n, 0, n, steps, *scalars)
    edges = [n * w // workers // 16 * 16 for w in range(workers)] + [n]
    pool = worker_pool(workers - 1)
    futures = [pool.submit(kernel, *arrays, n, edges[w], edges[w + 1], steps, *scalars) for w in range(1, workers)]
    first = kernel(*arrays, n, edges[0], edges[1], steps, *scalars)
    return first + sum(f.result() for f in futures)


def _flat(t: Tensor) -> np.ndarray | None:
    """`t`'s elements in memory order, if `t` is dense and time-major (contiguous, or e.g. channels-last)."""
    if t.is_contiguous():
        return t.view(-1).numpy()
    order = sorted(range(1, t.dim()), key=lambda i: -t.stride(i))
    permuted = t.permute(0, *order)
    if t.stride(0) == t[0].numel() and permuted.is_contiguous():
        return permuted.reshape(-1).numpy()
    return None


def _dense(t: Tensor) -> tuple[Tensor, np.ndarray]:
    """`t` (detached) and its flat memory; copied to contiguous if its layout is not dense and time-major."""
    t = t.detach()
    flat = _flat(t)
    if flat is None:
        t = t.contiguous()
        flat = t.view(-1).numpy()
    return t, flat


def _empty(like: Tensor) -> tuple[Tensor, np.ndarray]:
    """A new tensor with `like`'s dense time-major layout (empty_like keeps dense strides) and its memory."""
    out = torch.empty_like(like)
    return out, _flat(out)


def unsupported(d: NeuronDynamics, x: Tensor) -> str:
    """Why the fused CPU kernels cannot run this call ('' if they can)."""
    if os.environ.get("TAWQ_NEURON_KERNEL", "auto").lower() == "torch":
        return "TAWQ_NEURON_KERNEL=torch"
    if UNAVAILABLE:
        return UNAVAILABLE
    if x.device.type != "cpu":
        return "tensor is not on the CPU"
    if d.surrogate not in SURROGATE_IDS:
        return f"no fused CPU kernel for surrogate {d.surrogate!r}"
    if x.dtype not in DTYPES:
        return f"no fused CPU kernel for dtype {x.dtype}"
    return ""


def _scalars(d: NeuronDynamics, k: Leak, dtype: torch.dtype) -> tuple:
    """k, threshold, reset, rest and 1 in the tensor's precision (as PyTorch converts Python scalars),
    then the leak, decay_input and hard-reset flags. k is divided by (IEEE division, as PyTorch on CPU)."""
    cast = np.float32 if dtype == torch.float32 else np.float64
    return (cast(d.kernel_k(k)), cast(d.v_threshold), cast(d.reset_value), cast(d.rest), cast(1.0), d.leak_id,
            d.decay_input, d.hard)


def run(d: NeuronDynamics, x: Tensor, k: Leak, keep_h: bool) -> tuple[Tensor, Tensor | None]:
    """Fused forward: spikes, and ``h`` when `keep_h`, in x's memory layout (dense layouts are kept)."""
    x, xs = _dense(x)
    spikes, ss = _empty(x)
    charged, cs = _empty(x) if keep_h else (None, ss)
    steps, n = x.shape[0], x[0].numel()
    if n:
        _split(_forward, (xs, ss, cs), n, steps, (*_scalars(d, k, x.dtype), keep_h))
    return spikes, charged


def bptt(d: NeuronDynamics, grad_spikes: Tensor, x: Tensor, _unused: Tensor | None, k: Leak,
         need_k: bool) -> tuple[Tensor, Tensor | None]:
    """Fused backward from the saved input x (``h`` is rebuilt in cache): dL/dx in x's layout, and
    dL/dk (a float32 scalar) when `need_k`."""
    x, xs = _dense(x)
    steps, n = x.shape[0], x[0].numel()
    if grad_spikes.stride() != x.stride():
        grad_spikes = torch.empty_like(x).copy_(grad_spikes)
    gs = _flat(grad_spikes.detach())
    grad_x, gx = _empty(x)
    k_value, v_threshold, v_reset, rest, one, leak, decay_input, hard = _scalars(d, k, x.dtype)
    grad_k = 0.0
    if n:
        kernel = _backward_kernel(need_k, x.dtype == torch.float32)
        grad_k = _split(kernel, (gs, xs, gx), n, steps,
                        (k_value, v_threshold, v_reset, rest, one, type(one)(d.alpha),
                         type(one)(1.5707963267948966 * d.alpha), leak, decay_input, hard, d.detach_reset,
                         SURROGATE_IDS[d.surrogate]))
    return grad_x, (torch.tensor(grad_k, dtype=torch.float32) if need_k else None)
