"""`tawq`: temporal-adaptive ternary weights (Zhang et al. 2025), exactly as docs/tawq-method.md.

Each latent weight, standardized over its tensor, drives a calcium neuron (tau = 2, theta = 0.25,
hard reset) for T steps; the ternary spike it emits at step t is its weight at step t, scaled per
(timestep, output channel) by alpha = 1 / (fraction of non-zeros + 1e-6). Stored as one pattern
index per weight (at most 2T + 1 states: 3.2 bits at T = 4) plus the T x Co alpha table.

On CPU, `weights` runs the calcium dynamics in a fused numba kernel (`_calcium_cpu`; weights and
gradients bit-identical to the eager path); elsewhere the shared eager / Triton path.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tawq_core import hookimpl
from tawq_core.plugin import check_timesteps, use_kernel
from tawq_plugins.quantizers.calcium import CalciumQuantizer, standardize


class Tawq(CalciumQuantizer):
    """Ternary TaWQ: `weights(w, T)` -> ``[T, *w.shape]``, trained with a sigmoid-4 surrogate (QAT)."""

    name = "tawq"

    def __init__(self) -> None:
        super().__init__(levels=1)

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        if w.dim() < 1 or w.device.type != "cpu":
            return super().weights(w, timesteps)
        from tawq_plugins.quantizers import _calcium_cpu  # numba is imported when the kernel may run

        if not use_kernel("calcium (numba, CPU)", _calcium_cpu.unsupported(w.float())):
            return super().weights(w, timesteps)
        check_timesteps(timesteps)
        with torch.autocast(device_type=w.device.type, enabled=False):
            return _calcium_cpu.CalciumQuantCPU.apply(standardize(w.float()), timesteps, self.levels)

    def config(self) -> dict:
        config = super().config()
        del config["levels"]  # always 1: part of the method, not an option
        return config


@hookimpl
def tawq_register_quantizers(register):
    register("tawq", Tawq)
