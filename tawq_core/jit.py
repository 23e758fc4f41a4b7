"""numba for tawq's CPU kernels, imported when a kernel is first needed; and the kernels' one thread pool.

numba is imported on the first access to `njit` or `UNAVAILABLE` (PEP 562 ``__getattr__``), which the
kernel modules do when they are imported, and they are imported only when a kernel may run: importing
tawq or looking a plugin up never pays numba's import (about half a second) and a broken numba can only
cost the speed-up, never tawq itself.

``numba.njit(cache=True)`` looks for a writable cache folder when the function is *decorated*: beside
the source file, then in the user's cache directory (``~/.cache``), or ``NUMBA_CACHE_DIR``. With a
read-only install and an unwritable HOME (common on clusters and in containers) there is none, and
numba raises ``RuntimeError: cannot cache function ...: no locator available`` at import time, so the
module defining the kernel failed to import: `tawq train` died in a long traceback and the quantizer
whose kernel it was vanished from the registry. A cache only saves compile time on the next start,
so here its absence costs one warning and the kernel compiles in every process instead.

Every numba user in tawq imports `njit` and `UNAVAILABLE` from here (through `tawq_core.plugin`)::

    from tawq_core.plugin import UNAVAILABLE, njit  # njit is None when numba cannot be imported

    if njit is not None:
        @njit(nogil=True, cache=True)
        def kernel(x): ...

Kernels that release the GIL split their work over `worker_pool`: one pool per process for the quantizer,
neuron and deployed-layer kernels alike, so they never start a pool each. Where a fast kernel (numba or
Triton) may replace an eager path, `use_kernel` decides and records the outcome for provenance.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import ModuleType
from typing import Any


class KernelCacheWarning(RuntimeWarning):
    """numba found no writable cache folder: kernels compile in every process (slower start, same results)."""


_warned = [False]


@cache
def _numba() -> tuple[ModuleType | None, str]:
    """numba, imported once, and why not ('' when it imports)."""
    try:
        import numba
    except Exception as exc:  # an absent or broken numba means the eager paths are used
        return None, f"numba could not be imported ({type(exc).__name__}: {exc})"
    return numba, ""


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
    numba = _numba()[0]

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(**options)(function)
        except RuntimeError as exc:
            if not options.get("cache") or not _no_cache_location(exc):
                raise
            _warn_once(exc)
            return numba.njit(**{**options, "cache": False})(function)

    return decorate


def __getattr__(name: str) -> Any:
    """`njit` (None without numba) and `UNAVAILABLE` (why numba is missing, '' if not): numba is imported here."""
    if name == "njit":
        return _njit if _numba()[0] is not None else None
    if name == "UNAVAILABLE":
        return _numba()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


def worker_pool(workers: int) -> ThreadPoolExecutor:
    """The process's kernel threads, at least `workers` of them.

    Recreated after a fork (the parent's threads do not exist in the child) and when more workers are
    asked for than it has; a replaced pool finishes what it was given. numba's own parallel layers are not
    fork-safe with GNU OpenMP and would compete with PyTorch's pool, so nogil kernels run here instead.
    """
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
        old = _POOL
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tawq-kernel"))
        if old is not None and old[0] == os.getpid():
            old[2].shutdown(wait=False)
    return _POOL[2]


_KERNEL_USE: dict[str, dict[str, int]] = {}


def use_kernel(kernel: str, unsupported: str) -> bool:
    """Whether the fast `kernel` runs this call: `unsupported` is why it cannot ('' when it can).

    Each outcome is counted per process, so provenance can say which kernel produced a result and why a
    faster one did not (no numba, a float64 tensor, ``TAWQ_QUANT_KERNEL=torch``...), rather than leaving
    a slow number unexplained.
    """
    outcomes = _KERNEL_USE.setdefault(kernel, {})
    outcome = f"not run: {unsupported}" if unsupported else "ran"
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return not unsupported


def kernel_use() -> dict[str, dict[str, int]]:
    """``{kernel: {"ran" or "not run: why": calls}}`` for every kernel considered in this process so far."""
    return {kernel: dict(sorted(outcomes.items())) for kernel, outcomes in sorted(_KERNEL_USE.items())}
