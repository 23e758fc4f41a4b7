"""Compiled CPU kernels (numba) for deployed layers: exact int8 products, bit-plane weights, spike-driven sums.

numba compiles on first use and caches the machine code (`tawq_core.plugin.njit`); nothing needs a compiler at
install time. When numba cannot be imported, `UNAVAILABLE` says why and the deployed layers run their
exact dense torch path instead (and report that kernel name).
"""

from __future__ import annotations

from tawq_core.plugin import UNAVAILABLE

__all__ = ["UNAVAILABLE"]
