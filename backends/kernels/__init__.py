"""Compiled CPU kernels (numba) for deployed layers: spikes times bit-packed or int8 weights.

numba compiles on first use and caches the machine code next to these files (``cache=True``); nothing
needs a compiler at install time. When numba cannot be imported, `UNAVAILABLE` says why and the
deployed layers run their exact dense torch path instead (and report that kernel name).
"""

from __future__ import annotations

try:
    import numba  # noqa: F401
except Exception as exc:  # an absent or broken numba means the deployed layers use their dense path
    UNAVAILABLE = f"numba could not be imported ({type(exc).__name__}: {exc})"
else:
    UNAVAILABLE = ""
