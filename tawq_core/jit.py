"""numba for tawq's CPU kernels: compiled with an on-disk cache where one can be written, without one elsewhere.

``numba.njit(cache=True)`` looks for a writable cache folder when the function is *decorated*: beside
the source file, then in the user's cache directory (``~/.cache``), or ``NUMBA_CACHE_DIR``. With a
read-only install and an unwritable HOME (common on clusters and in containers) there is none, and
numba raises ``RuntimeError: cannot cache function ...: no locator available`` at import time, so the
module defining the kernel failed to import: `tawq train` died in a long traceback and the quantizer
whose kernel it was vanished from the registry. A cache only saves compile time on the next start,
so here its absence costs one warning and the kernel compiles in every process instead.

Every numba user in tawq imports `njit` and `UNAVAILABLE` from here::

    from tawq_core.jit import UNAVAILABLE, njit  # njit is None when numba cannot be imported

    if njit is not None:
        @njit(nogil=True, cache=True)
        def kernel(x): ...
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

try:
    import numba
except Exception as exc:  # an absent or broken numba means the eager paths are used
    numba = None
    UNAVAILABLE = f"numba could not be imported ({type(exc).__name__}: {exc})"
else:
    UNAVAILABLE = ""


class KernelCacheWarning(RuntimeWarning):
    """numba found no writable cache folder: kernels compile in every process (slower start, same results)."""


_warned = [False]


def _no_cache_location(exc: RuntimeError) -> bool:
    return "cannot cache function" in str(exc)


def _warn_once(exc: RuntimeError) -> None:
    if not _warned[0]:
        _warned[0] = True
        warnings.warn(f"numba cannot cache compiled kernels here ({exc}); they compile in every process "
                      "instead (set NUMBA_CACHE_DIR to a writable folder to keep them)", KernelCacheWarning,
                      stacklevel=3)


def _njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)``; with ``cache=True`` and no writable cache folder, ``cache=False`` and one
    `KernelCacheWarning` per process."""

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(**options)(function)
        except RuntimeError as exc:
            if not options.get("cache") or not _no_cache_location(exc):
                raise
            _warn_once(exc)
            return numba.njit(**{**options, "cache": False})(function)

    return decorate


njit: Callable[..., Callable[[Callable[..., Any]], Any]] | None = _njit if numba is not None else None
