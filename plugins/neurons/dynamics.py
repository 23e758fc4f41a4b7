"""Multi-step integrate-and-fire dynamics with hand-written BPTT.

Why not let autograd record the time loop: a plain loop builds a graph of ~10 nodes per timestep and
keeps every intermediate alive (charge, spike, reset terms). Here the forward runs the T steps without
recording anything and keeps only the charged (pre-spike) membrane ``h[t]``; the backward recomputes
spikes, surrogate slopes and post-reset membranes from ``h`` and walks time backwards once. The result
equals the autograd gradient of the same equations (pinned by tests), with less memory and far fewer
kernel launches. Without gradients the forward runs alone and stores nothing. The fused CPU kernels
(`cpu_fused`) keep the input x instead of ``h`` (which autograd frees otherwise) and rebuild ``h`` in
cache during the backward: the forward writes one tensor less.

The equations (spikingjelly's, in its operation order, so spikes match it bit for bit) are those of
`tawq_core.plugin.NeuronDynamics`, which every neuron layer holds as its description: this loop calls
its `charge`, `fire` and `reset`; the backward differentiates them (the surrogate slope at
``h - v_th`` stands in for the spike's derivative; with ``detach_reset`` no gradient flows through the
spike in the reset). The leak constant k travels beside the description: a float (LIF) or PLIF's
learnable ``sigmoid(w)`` tensor, which overrides the description's k.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from tawq_core.plugin import NeuronDynamics, use_kernel
from tawq_plugins.neurons.surrogate import get_surrogate

Leak = float | Tensor | None


def _run(d: NeuronDynamics, x: Tensor, k: Leak, keep_h: bool) -> tuple[Tensor, Tensor | None]:
    """The T-step forward without autograd: spikes, and the charged membranes if asked for."""
    spikes = torch.empty_like(x)
    charged = torch.empty_like(x) if keep_h else None
    v = torch.full_like(x[0], d.rest)
    for t in range(x.shape[0]):
        h = d.charge(x[t], v, k, out=None if charged is None else charged[t])
        fired = d.fire(h)
        spikes[t] = fired
        v = d.reset(h, fired)
    return spikes, charged


def _bptt(d: NeuronDynamics, grad_spikes: Tensor, charged: Tensor, x: Tensor | None, k: Leak,
          need_k: bool) -> tuple[Tensor, Tensor | None]:
    """Walk time backwards: dL/dx for every step, and dL/dk summed over everything (PLIF).

    ``carry`` is dL/dv[t] (post-reset membrane) arriving from step t + 1. Through the reset,
    dv/dh = 1 - s (hard) or 1 (soft), plus (v_reset - h)·σ' or -v_th·σ' when the reset is not detached.
    """
    surrogate = get_surrogate(d.surrogate)
    grad_x = torch.empty_like(charged)
    grad_k = torch.zeros_like(charged[0], dtype=torch.float32) if need_k else None
    carry: Tensor | None = None
    for t in range(charged.shape[0] - 1, -1, -1):
        h = charged[t]
        u = h - d.v_threshold
        if carry is None:
            grad_h = surrogate.chain(grad_spikes[t], u, d.alpha)
        elif d.detach_reset:
            through_reset = torch.where(d.fire(h), 0.0, carry) if d.hard else carry
            grad_h = surrogate.chain(grad_spikes[t], u, d.alpha) + through_reset
        else:
            slope = surrogate.derivative(u, d.alpha)
            if d.hard:
                reset_slope = (1 - d.fire(h).to(h.dtype)) + (d.v_reset - h) * slope
            else:
                reset_slope = 1 - d.v_threshold * slope
            grad_h = grad_spikes[t] * slope + carry * reset_slope
        if d.leak == "none":
            grad_x[t] = grad_h
            carry = grad_h
            continue
        if d.decay_input:
            scaled = d.scale(grad_h, k, out=grad_x[t])
        else:
            grad_x[t] = grad_h
            scaled = d.scale(grad_h, k)
        carry = grad_h - scaled
        if grad_k is not None:
            v_prev = d.reset(charged[t - 1], d.fire(charged[t - 1])) if t else d.rest
            grad_k += grad_h * ((x[t] - (v_prev - d.rest)) if d.decay_input else -(v_prev - d.rest))
    return grad_x, grad_k


class Kernels(NamedTuple):
    """A forward and a backward implementation; `recompute`: backward takes x and rebuilds ``h`` itself."""

    run: Callable[..., tuple[Tensor, Tensor | None]]
    bptt: Callable[..., tuple[Tensor, Tensor | None]]
    recompute: bool = False


EAGER = Kernels(_run, _bptt)


def _kernels(d: NeuronDynamics, x: Tensor) -> Kernels:
    """Fused kernels where they can run (Triton on CUDA, numba on CPU; supported surrogate), else the eager loops."""
    if x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1":
        from tawq_plugins.neurons import fused

        if use_kernel("neuron (Triton)", fused.unsupported(d, x)):
            return Kernels(fused.run, fused.bptt)
    elif x.device.type == "cpu":
        from tawq_plugins.neurons import cpu_fused

        if use_kernel("neuron (numba, CPU)", cpu_fused.unsupported(d, x)):
            return Kernels(cpu_fused.run, cpu_fused.bptt, recompute=True)
    return EAGER


class _MultiStep(torch.autograd.Function):
    """Autograd wrapper: forward keeps ``h`` (or x, for kernels that recompute ``h``; x also when a
    learnable leak needs it)."""

    @staticmethod
    def forward(ctx, x: Tensor, k: Leak, d: NeuronDynamics, kernels: Kernels) -> Tensor:
        spikes, charged = kernels.run(d, x, k, keep_h=not kernels.recompute)
        need_k = isinstance(k, Tensor) and ctx.needs_input_grad[1]
        keep_x = need_k and d.decay_input and not kernels.recompute
        ctx.d, ctx.need_k, ctx.bptt, ctx.recompute = d, need_k, kernels.bptt, kernels.recompute
        ctx.k = None if isinstance(k, Tensor) else k
        ctx.save_for_backward(x if kernels.recompute else charged, x if keep_x else None,
                              k if isinstance(k, Tensor) else None)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        saved, x, k_tensor = ctx.saved_tensors
        k = k_tensor if k_tensor is not None else ctx.k
        grad_x, grad_k = ctx.bptt(ctx.d, grad_spikes, saved, saved if ctx.recompute else x, k, ctx.need_k)
        if grad_k is not None:
            grad_k = grad_k.sum().reshape(k_tensor.shape).to(k_tensor.dtype)
        return grad_x, grad_k, None, None


def multistep(x: Tensor, d: NeuronDynamics, k: Leak = None) -> Tensor:
    """Spikes ``[T, ...]`` of neurons driven by ``x [T, ...]`` from a fresh state.

    Uses the hand-written BPTT when a gradient is wanted (x or k requires grad), otherwise a plain
    forward that stores nothing; fused into single kernels on CUDA (`fused`) and CPU (`cpu_fused`)
    when possible.
    """
    kernels = _kernels(d, x)
    wants_grad = torch.is_grad_enabled() and (
        x.requires_grad or (isinstance(k, Tensor) and k.requires_grad)
    )
    if wants_grad:
        return _MultiStep.apply(x, k, d, kernels)
    with torch.no_grad():
        return kernels.run(d, x, k, keep_h=False)[0]
