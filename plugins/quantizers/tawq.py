"""`tawq`: temporal-adaptive ternary weights (Zhang et al. 2025), exactly as docs/tawq-method.md.

Each latent weight, standardized over its tensor, drives a calcium neuron (tau = 2, theta = 0.25,
hard reset) for T steps; the ternary spike it emits at step t is its weight at step t, scaled per
(timestep, output channel) by alpha = 1 / (fraction of non-zeros + 1e-6). Stored as one pattern
index per weight (at most 2T + 1 states: 3.2 bits at T = 4) plus the T x Co alpha table.

On CPU, `weights` runs the dynamics, alpha and their backward in fused numba kernels
(`_calcium_cpu`, bit-identical effective weights); elsewhere the shared eager / Triton path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import ShapeError, hookimpl
from tawq_core.quantizer import check_timesteps
from tawq_plugins.quantizers import _calcium_cpu
from tawq_plugins.quantizers.calcium import ALPHA_EPS, SURROGATE_SLOPE, TAU, THETA, CalciumQuantizer, standardize


class Tawq(CalciumQuantizer):
    """Ternary TaWQ: `weights(w, T)` -> ``[T, *w.shape]``, trained with a sigmoid-4 surrogate (QAT)."""

    name = "tawq"

    def __init__(self) -> None:
        super().__init__(levels=1)

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        if w.dim() < 1 or _calcium_cpu.unsupported(w.float(), self.levels):
            return super().weights(w, timesteps)
        check_timesteps(timesteps)
        if w.numel() < 2:
            raise ShapeError(f"tawq standardizes over the whole weight tensor and needs >= 2 weights, got {w.numel()}")
        with torch.autocast(device_type=w.device.type, enabled=False):
            return _calcium_cpu.CalciumQuantCPU.apply(standardize(w.float()), timesteps, TAU, THETA, ALPHA_EPS,
                                                      SURROGATE_SLOPE)

    def config(self) -> dict:
        config = super().config()
        del config["levels"]  # always 1: part of the method, not an option
        return config


@hookimpl
def tawq_register_quantizers(register):
    register("tawq", Tawq)
