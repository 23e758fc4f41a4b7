"""The calcium-neuron weight dynamics shared by `tawq` (ternary) and `mtawq` (multi-level).

Every latent weight drives a tiny leaky integrator for T steps; the integer it fires at step t is
that synapse's weight at step t (see docs/tawq-method.md). The forward pass and its backward pass
(sigmoid-4 surrogate, BPTT over the T steps, gradient through alpha) are written out by hand in one
autograd Function: the dynamics run once per layer per forward, in a fixed number of tensor operations
(see `run_dynamics`), far fewer than autograd records for the plain loop. Its gradients equal those of
a plain autograd loop (tests/plugins/quantizers/test_quantizer_tawq.py checks this).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tawq_core import ConfigError, PackedWeight, Quantizer, QuantMode, ShapeError
from tawq_core.plugin import check_timesteps, pack_patterns, packed_checks, unpack_patterns, use_kernel

TAU = 2.0  # calcium leak time constant
THETA = 0.25  # firing threshold of the first level
SURROGATE_SLOPE = 4.0  # a in d/du sigmoid(a·u)
ALPHA_EPS = 1e-6  # alpha = 1 / (mean |q| + eps)
STD_FLOOR = 1e-12  # only a constant tensor gets near it; keeps its standardized weights at 0, not NaN


def standardize(w: Tensor) -> Tensor:
    """Per-tensor (w - mean) / std with the unbiased std; differentiable through both statistics."""
    if w.numel() < 2:
        raise ShapeError(f"tawq standardizes over the whole weight tensor and needs >= 2 weights, got {w.numel()}")
    return (w - w.mean()) / w.std().clamp_min(STD_FLOOR)


def thresholds(levels: int) -> list[float]:
    """Firing thresholds (2k - 1)·theta, k = 1..L: fire = round(c / 2theta), ties toward 0, clipped to ±L."""
    return [(2 * k - 1) * THETA for k in range(1, levels + 1)]


def fire(u: Tensor, levels: int) -> Tensor:
    """q in [-L, L]; for L = 1 exactly 1[u > theta] - 1[u < -theta].

    hardshrink keeps u strictly beyond the threshold, so the pattern table's closed intervals hold
    exactly, and every zero of q is +0 (which keeps packed round trips bit-exact).
    """
    q = torch.sign(F.hardshrink(u, THETA))
    for th in thresholds(levels)[1:]:
        q = q + torch.sign(F.hardshrink(u, th))
    return q


def surrogate(u: Tensor, levels: int) -> Tensor:
    """d fire / du: per threshold 1/2·[g(u - th) + g(u + th)], g(v) = a·sigmoid(a v)·(1 - sigmoid(a v)).

    Written as g(v) = a/4 · (1 - tanh(a v / 2)^2), the same function with fewer tensor passes.
    """
    half_slope = SURROGATE_SLOPE / 2
    scaled = u * half_slope
    squares = None
    for th in thresholds(levels):
        for tanh in (torch.tanh(scaled - half_slope * th), torch.tanh(scaled + half_slope * th)):
            squares = tanh * tanh if squares is None else squares.addcmul_(tanh, tanh)
    # sum over the 2L bumps of 1/2 · a/4 · (1 - tanh^2)
    return squares.mul_(-SURROGATE_SLOPE / 8).add_(SURROGATE_SLOPE / 4 * levels)


def channel_view(table: Tensor, ndim: int) -> Tensor:
    """Broadcast a ``[T, Co]`` table against ``[T, Co, ...]`` weights with `ndim` dims in total."""
    return table.reshape(*table.shape, *([1] * (ndim - table.dim())))


def effective(alpha: Tensor, q: Tensor) -> Tensor:
    """alpha[t, o] · q[t, o, ...]: the one multiplication `weights` and `unpack` share (bit-exact)."""
    return channel_view(alpha, q.dim()) * q


def fan_in_mean(t: Tensor) -> Tensor:
    """Mean over each output channel's fan-in: ``[T, Co, ...]`` -> ``[T, Co]``."""
    return t.mean(dim=tuple(range(2, t.dim()))) if t.dim() > 2 else t


def reset_free_trajectory(x: Tensor, timesteps: int) -> Tensor:
    """``U[j]``: the calcium level j + 1 steps after a reset, charged by the constant drive `x`."""
    trajectory = x.new_empty(timesteps, *x.shape)
    c = torch.zeros_like(x)
    for j in range(timesteps):
        c = torch.add(c, (x - c) / TAU, out=trajectory[j])  # c <- c + (x - c) / tau, as the spec writes it
    return trajectory


def run_dynamics(x: Tensor, timesteps: int, levels: int, jacobian: bool = False
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Integrate drive `x` for T steps from c = 0: (q ``[T, *x.shape]``, alpha ``[T, Co]``, dq/dx).

    The drive is constant and the reset returns c to exactly 0, so after a spike the neuron retraces
    the same float values: it fires every k steps, k = the first step at which the reset-free
    trajectory U crosses theta, and at step t it sits at U[(t - 1) mod k]. Gathering from U gives the
    step-by-step loop with resets bit for bit, in a fixed number of tensor operations (fewer kernel
    launches, which dominate on GPUs). With `jacobian`, also d q_t / d x under the surrogate: each
    weight's dynamics are a scalar recurrence, so the BPTT sum collapses to one product per step.
    On CUDA a fused Triton kernel (`calcium_fused`) runs the same recurrence in one launch.
    """
    if x.is_cuda:
        from tawq_plugins.quantizers import calcium_fused as fused  # Triton is imported where it can run

        if use_kernel("calcium (Triton)", fused.unsupported(x)):
            q, slopes = fused.run(x, timesteps, levels, jacobian, TAU, THETA, SURROGATE_SLOPE)
            return q, 1.0 / (fan_in_mean(q.abs()) + ALPHA_EPS), slopes
    trajectory = reset_free_trajectory(x, timesteps)
    # |U| only grows toward |x| (each step halves the gap, rounding is monotone), so the steps before
    # the first spike are the steps not beyond theta; a weight that never fires gets period T + 1
    quiet = timesteps - (trajectory.abs() > THETA).sum(dim=0)
    period = (quiet + 1).to(x.dtype)
    steps = torch.arange(timesteps, dtype=x.dtype, device=x.device).reshape(-1, *([1] * x.dim()))
    since_reset = steps - torch.floor(steps / period) * period  # (t - 1) mod k, exact for small integers
    fired_now = (since_reset == period - 1).to(x.dtype)
    level = fire(trajectory.gather(0, quiet.clamp(max=timesteps - 1).unsqueeze(0)), levels)
    q = (fired_now * level).add_(0.0)  # + 0.0 turns the -0 of (0 · negative level) into +0
    alpha = 1.0 / (fan_in_mean(q.abs()) + ALPHA_EPS)
    if not jacobian:
        return q, alpha, None
    potential = trajectory.gather(0, since_reset.to(torch.int64))
    # d U[j] / d x under the detached reset: d <- d·(1 - 1/tau) + 1/tau from 0, i.e. 1 - (1 - 1/tau)^(j + 1)
    slopes = 1 - torch.exp((since_reset + 1) * math.log(1 - 1 / TAU))
    return q, alpha, surrogate(potential, levels).mul_(slopes)


class CalciumQuant(torch.autograd.Function):
    """Standardized weights ``x`` -> effective weights ``[T, *x.shape]`` with a hand-written backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, timesteps: int, levels: int) -> Tensor:
        q, alpha, slopes = run_dynamics(x, timesteps, levels, jacobian=ctx.needs_input_grad[0])
        ctx.save_for_backward(q, alpha, slopes)
        ctx.levels = levels
        return effective(alpha, q)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        q, alpha, slopes = ctx.saved_tensors
        a = channel_view(alpha, q.dim())
        # through alpha = 1/(mean|q| + eps): d alpha / d q = -alpha^2 · sign(q) / n (abs' = 0 at 0, as autograd)
        g_alpha = channel_view(fan_in_mean(grad * q), q.dim())  # = sum(grad·q) / n
        sign = q if ctx.levels == 1 else torch.sign(q)
        g_q = (grad * a).addcmul_(g_alpha * a * a, sign, value=-1)
        return (g_q.mul_(slopes)).sum(dim=0), None, None


class CalciumQuantizer(Quantizer):
    """Temporal-adaptive weights from the calcium neuron; `levels` = 1 is TaWQ, > 1 is mTaWQ."""

    mode = QuantMode.QAT
    temporal = True

    def __init__(self, levels: int = 1):
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
            raise ConfigError(f"levels must be a positive integer, got {levels!r}")
        self.levels = levels

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        check_timesteps(timesteps)
        if w.dim() < 1:
            raise ShapeError(f"{self.name} needs a weight with an output-channel dim, got shape {tuple(w.shape)}")
        # float32 even under autocast: fp16 rounding would flip threshold decisions
        with torch.autocast(device_type=w.device.type, enabled=False):
            return CalciumQuant.apply(standardize(w.float()), timesteps, self.levels)

    def integer_weights(self, w: Tensor, timesteps: int) -> tuple[Tensor, Tensor]:
        """(q ``[T, *w.shape]`` float, alpha ``[T, Co]``) without gradients: what `pack` stores."""
        check_timesteps(timesteps)
        with torch.no_grad(), torch.autocast(device_type=w.device.type, enabled=False):
            q, alpha, _ = run_dynamics(standardize(w.float()), timesteps, self.levels)
        return q, alpha

    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        q, alpha = self.integer_weights(w, timesteps)
        codes, codebook = pack_patterns(q)
        return PackedWeight(
            self.name, tuple(w.shape), timesteps,
            payload={"patterns": codes},
            scales={"alpha": alpha.contiguous(), "codebook": codebook},
            meta={"levels": self.levels, "states": int(codebook.shape[0])},
        )

    def unpack(self, packed: PackedWeight) -> Tensor:
        q = unpack_patterns(packed.payload["patterns"], packed.scales["codebook"], packed.shape)
        return effective(packed.scales["alpha"], q.to(torch.float32))

    def check_packed(self, packed: PackedWeight) -> str | None:
        """Patterns index the codebook, whose T-step rows hold levels in [-L, L]; alpha is [T, Co] float32."""
        c, book = packed_checks, packed.scales.get("codebook")
        return (c.keys(packed, {"patterns"}, {"alpha", "codebook"})
                or c.entry(packed, "scales", "codebook", torch.int8)
                or (None if book.dim() == 2 and book.shape[1] == packed.timesteps and book.shape[0] >= 1 else
                    f"scales tensor 'codebook' has shape {tuple(book.shape)}, expected [patterns, {packed.timesteps}]")
                or c.in_range(book, "codebook", -self.levels, self.levels)
                or c.entry(packed, "payload", "patterns", torch.uint8)
                or c.digits(packed.payload["patterns"], "patterns", int(book.shape[0]), packed.numel)
                or c.entry(packed, "scales", "alpha", torch.float32, packed.timesteps * packed.shape[0])
                or c.finite(packed))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "levels": self.levels, "tau": TAU, "theta": THETA,
                "surrogate_slope": SURROGATE_SLOPE}
