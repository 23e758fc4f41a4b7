"""`mtawq`: multi-bit TaWQ, our interpretation of the extension the paper mentions without equations.

The same calcium neuron, but the fire function emits an integer in [-L, L], L = 2**(bits-1) - 1:
q = round(c / 2theta) with ties toward zero, clipped to ±L, i.e. one more level every 2theta = 0.5
above theta. The reset stays hard (any spike resets c to 0), the surrogate gradient is one sigmoid-4
bump per threshold, and alpha = 1 / (mean |q| over the fan-in + 1e-6) as in TaWQ. With bits = 2
(L = 1) every step is bit-identical to `tawq`.
"""

from __future__ import annotations

from tawq_core import ConfigError, hookimpl
from tawq_plugins.quantizers.calcium import CalciumQuantizer

MAX_BITS = 4  # the surrogate sums 2L bumps per step; beyond 4 bits (L = 7) use ptq8-style quantization


class MTawq(CalciumQuantizer):
    """Multi-level TaWQ with ``bits`` in [2, 4] bits per timestep (L = 1, 3, 7 levels each side)."""

    name = "mtawq"

    def __init__(self, bits: int = 3):
        if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= MAX_BITS:
            raise ConfigError(f"mtawq bits must be an integer in [2, {MAX_BITS}], got {bits!r}")
        self.bits = bits
        super().__init__(levels=2 ** (bits - 1) - 1)

    def config(self) -> dict:
        return {**super().config(), "bits": self.bits}


@hookimpl
def tawq_register_quantizers(register):
    register("mtawq", MTawq)
