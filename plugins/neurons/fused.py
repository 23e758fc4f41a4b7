"""Fused GPU kernels (Triton) for the multi-step dynamics: one launch for all T steps.

The eager loop in `tawq_plugins.neurons.dynamics` launches ~5 kernels per timestep forward and ~10
backward, each reading and writing whole tensors. Here one program walks the T steps of a block of
neurons with the membrane in registers: the forward reads x once and writes the spikes and ``h``, the
backward reads ``h`` and dL/ds once and writes dL/dx. Same equations in the same order, the same
division as PyTorch on that device and no FMA contraction, so spikes equal the eager path's bit for bit
in float32 (pinned by the CUDA tests); gradients agree to float rounding (Triton's sigmoid is not
PyTorch's). Arithmetic is float32 whatever the storage dtype; the stored ``h`` is rounded to the
storage dtype before firing, so forward and backward see the same ``h``.

The constants and the static branch flags come from the layer's `NeuronDynamics` (`leak_id`, `hard`,
`reset_value`, `kernel_k`), whose `charge`/`fire`/`reset` `_charge`/`_reset` restate.

Used automatically for CUDA tensors when Triton imports and the surrogate has a kernel here; set
``TAWQ_NEURON_KERNEL=torch`` to force the eager loop.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from tawq_core.plugin import NeuronDynamics
from tawq_plugins.device_guard import on_device_of
from tawq_plugins.neurons.dynamics import Leak

SURROGATE_IDS = {"sigmoid": 0, "atan": 1}
BLOCK = 1024

try:
    import triton
    import triton.language as tl
except Exception as exc:  # an absent or broken Triton simply means the eager loop is used
    triton = None
    UNAVAILABLE = f"triton could not be imported ({type(exc).__name__}: {exc})"
else:
    UNAVAILABLE = ""

    @triton.jit
    def _divide(a, k, RECIPROCAL: tl.constexpr):
        # k is 1/tau when RECIPROCAL (PyTorch's CUDA division by a scalar), else tau (IEEE division)
        if RECIPROCAL:
            q = a * k
        else:
            q = tl.math.div_rn(a, k)
        return q

    @triton.jit
    def _charge(v, x, k, rest, LEAK: tl.constexpr, DECAY_INPUT: tl.constexpr, RECIPROCAL: tl.constexpr):
        if LEAK == 0:
            h = v + x
        elif LEAK == 1:
            if DECAY_INPUT:
                h = v + _divide(x - (v - rest), k, RECIPROCAL)
            else:
                h = v - _divide(v - rest, k, RECIPROCAL) + x
        else:
            if DECAY_INPUT:
                h = v + (x - (v - rest)) * k
            else:
                h = v - (v - rest) * k + x
        return h

    @triton.jit
    def _reset(h, v_threshold, v_reset, HARD: tl.constexpr):
        fired = h >= v_threshold
        if HARD:
            v = tl.where(fired, v_reset, h)
        else:
            v = h - fired.to(tl.float32) * v_threshold
        return v

    @triton.jit(do_not_specialize=["n", "steps"])
    def _forward_kernel(x_ptr, spikes_ptr, h_ptr, k_ptr, k_value, n, steps, v_threshold, v_reset, rest,
                        LEAK: tl.constexpr, DECAY_INPUT: tl.constexpr, HARD: tl.constexpr,
                        RECIPROCAL: tl.constexpr, KEEP_H: tl.constexpr, BLOCK_SIZE: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        mask = offs < n
        k = k_value
        if LEAK == 2:
            k = tl.load(k_ptr).to(tl.float32)
        v = tl.zeros([BLOCK_SIZE], dtype=tl.float32) + rest
        for t in range(steps):
            at = offs + n.to(tl.int64) * t
            x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
            h = _charge(v, x, k, rest, LEAK, DECAY_INPUT, RECIPROCAL)
            h = h.to(spikes_ptr.dtype.element_ty).to(tl.float32)  # fire on the h that backward will see
            tl.store(spikes_ptr + at, (h >= v_threshold).to(spikes_ptr.dtype.element_ty), mask=mask)
            if KEEP_H:
                tl.store(h_ptr + at, h.to(h_ptr.dtype.element_ty), mask=mask)
            v = _reset(h, v_threshold, v_reset, HARD)

    @triton.jit(do_not_specialize=["n", "steps"])
    def _backward_kernel(grad_s_ptr, h_ptr, x_ptr, grad_x_ptr, grad_k_ptr, k_ptr, k_value, n, steps,
                         v_threshold, v_reset, rest, alpha, LEAK: tl.constexpr, DECAY_INPUT: tl.constexpr,
                         HARD: tl.constexpr, RECIPROCAL: tl.constexpr, DETACH: tl.constexpr,
                         SURROGATE: tl.constexpr, NEED_K: tl.constexpr, BLOCK_SIZE: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid.to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        mask = offs < n
        k = k_value
        if LEAK == 2:
            k = tl.load(k_ptr).to(tl.float32)
        carry = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        grad_k = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
        for i in range(steps):
            t = steps - 1 - i
            at = offs + n.to(tl.int64) * t
            h = tl.load(h_ptr + at, mask=mask, other=0.0).to(tl.float32)
            grad_s = tl.load(grad_s_ptr + at, mask=mask, other=0.0).to(tl.float32)
            u = h - v_threshold
            if SURROGATE == 0:
                sig = tl.sigmoid(alpha * u)
                slope = (1 - sig) * sig * alpha
            else:
                z = u * (1.5707963267948966 * alpha)
                slope = (alpha / 2) / (1 + z * z)
            fired = h >= v_threshold
            if HARD:
                through = tl.where(fired, 0.0, 1.0)
                if not DETACH:
                    through = through + (v_reset - h) * slope
            else:
                if DETACH:
                    through = tl.full([BLOCK_SIZE], 1.0, tl.float32)
                else:
                    through = 1 - v_threshold * slope
            grad_h = grad_s * slope + carry * through
            if LEAK == 0:
                grad_x = grad_h
                carry = grad_h
            else:
                if LEAK == 1:
                    scaled = _divide(grad_h, k, RECIPROCAL)
                else:
                    scaled = grad_h * k
                if DECAY_INPUT:
                    grad_x = scaled
                else:
                    grad_x = grad_h
                carry = grad_h - scaled
            tl.store(grad_x_ptr + at, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)
            if NEED_K:
                has_prev = (offs * 0 + t) > 0  # a tensor, so masks work compiled and interpreted
                h_prev = tl.load(h_ptr + (at - n), mask=mask & has_prev, other=0.0).to(tl.float32)
                v_prev = tl.where(has_prev, _reset(h_prev, v_threshold, v_reset, HARD), rest)
                if DECAY_INPUT:
                    x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
                    grad_k += grad_h * (x - (v_prev - rest))
                else:
                    grad_k += grad_h * (rest - v_prev)
        if NEED_K:
            tl.store(grad_k_ptr + pid, tl.sum(tl.where(mask, grad_k, 0.0), axis=0))


def unsupported(d: NeuronDynamics, x: Tensor) -> str:
    """Why the fused kernels cannot run this call ('' if they can)."""
    if os.environ.get("TAWQ_NEURON_KERNEL", "auto").lower() == "torch":
        return "TAWQ_NEURON_KERNEL=torch"
    if UNAVAILABLE:
        return UNAVAILABLE
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        return "tensor is not on a CUDA device"
    if d.surrogate not in SURROGATE_IDS:
        return f"no fused kernel for surrogate {d.surrogate!r}"
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"no fused kernel for dtype {x.dtype}"
    return ""


def _launch_args(d: NeuronDynamics, k: Leak, like: Tensor) -> tuple[Tensor, float, dict]:
    """k as a pointer (PLIF; `like` stands in, unread, otherwise) or a float, and the static flags.

    The eager loop divides by tau; on CUDA PyTorch does that as a multiplication by the float32
    reciprocal (`NeuronDynamics.kernel_k` with `reciprocal`), so the kernel does the same there to keep
    spikes bit-identical to the eager path for any tau (the interpreter on CPU divides, as PyTorch there).
    """
    reciprocal = like.is_cuda
    k_value = 1.0 if isinstance(k, Tensor) else d.kernel_k(k, reciprocal)  # no device sync for PLIF's k
    flags = {"LEAK": d.leak_id, "DECAY_INPUT": d.decay_input, "HARD": d.hard, "RECIPROCAL": reciprocal}
    return (k if isinstance(k, Tensor) else like), k_value, flags


def _grid(n: int) -> tuple[int]:
    return (math.ceil(n / BLOCK),)


def run(d: NeuronDynamics, x: Tensor, k: Leak, keep_h: bool) -> tuple[Tensor, Tensor | None]:
    """Fused forward: spikes, and ``h`` when `keep_h` (same layout as x, made contiguous)."""
    x = x.contiguous()
    steps, n = x.shape[0], x[0].numel()
    spikes = torch.empty_like(x)
    charged = torch.empty_like(x) if keep_h else spikes
    k_ptr, k_value, flags = _launch_args(d, k, x)
    with on_device_of(x):
        _forward_kernel[_grid(n)](x, spikes, charged, k_ptr, k_value, n, steps, d.v_threshold, d.reset_value, d.rest,
                                  KEEP_H=keep_h, BLOCK_SIZE=BLOCK, enable_fp_fusion=False, **flags)
    return spikes, (charged if keep_h else None)


def bptt(d: NeuronDynamics, grad_spikes: Tensor, charged: Tensor, x: Tensor | None, k: Leak,
         need_k: bool) -> tuple[Tensor, Tensor | None]:
    """Fused backward: dL/dx, and dL/dk (a float32 scalar) when `need_k`."""
    grad_spikes = grad_spikes.contiguous()
    steps, n = charged.shape[0], charged[0].numel()
    grad_x = torch.empty_like(charged)
    grid = _grid(n)
    partial = torch.empty(grid[0], device=charged.device, dtype=torch.float32) if need_k else grad_x
    k_ptr, k_value, flags = _launch_args(d, k, charged)
    x_ptr = x.contiguous() if x is not None else charged
    with on_device_of(charged):
        _backward_kernel[grid](grad_spikes, charged, x_ptr, grad_x, partial, k_ptr, k_value, n, steps,
                               d.v_threshold, d.reset_value, d.rest, d.alpha, DETACH=d.detach_reset,
                               SURROGATE=SURROGATE_IDS[d.surrogate], NEED_K=need_k, BLOCK_SIZE=BLOCK,
                               enable_fp_fusion=False, **flags)
    return grad_x, (partial.sum() if need_k else None)
