"""`tawq`: temporal-adaptive ternary weights (Zhang et al. 2025), exactly as docs/tawq-method.md.

Each latent weight, standardized over its tensor, drives a calcium neuron (tau = 2, theta = 0.25,
hard reset) for T steps; the ternary spike it emits at step t is its weight at step t, scaled per
(timestep, output channel) by alpha = 1 / (fraction of non-zeros + 1e-6). Stored as one pattern
index per weight (at most 2T + 1 states: 3.2 bits at T = 4) plus the T x Co alpha table.
"""

from __future__ import annotations

from tawq_core import hookimpl
from tawq_plugins.quantizers.calcium import CalciumQuantizer


class Tawq(CalciumQuantizer):
    """Ternary TaWQ: `weights(w, T)` -> ``[T, *w.shape]``, trained with a sigmoid-4 surrogate (QAT)."""

    name = "tawq"

    def __init__(self) -> None:
        super().__init__(levels=1)

    def config(self) -> dict:
        config = super().config()
        del config["levels"]  # always 1: part of the method, not an option
        return config


@hookimpl
def tawq_register_quantizers(register):
    register("tawq", Tawq)
