"""Run a nogil numba kernel over row ranges on the process's kernel threads (torch's thread count wide).

numba's own parallel layers are not fork-safe with GNU OpenMP and would compete with PyTorch's pool, so,
like the fused neuron and quantizer kernels, the deployed kernels release the GIL and split their rows
over `tawq_core.plugin.worker_pool`, the one pool all of them share.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tawq_core.plugin import worker_pool

PARALLEL_MIN_WORK = 1 << 18  # rows x work per row below which a second thread costs more than it gives


def split_rows(kernel: Callable[[int, int], object], rows: int, work_per_row: int) -> None:
    """Call ``kernel(lo, hi)`` over [0, rows) in contiguous ranges, one per thread when worth it."""
    workers = min(torch.get_num_threads(), rows)
    if workers <= 1 or rows * work_per_row < PARALLEL_MIN_WORK:
        kernel(0, rows)
        return
    bounds = [rows * i // workers for i in range(workers + 1)]
    pool = worker_pool(workers)
    futures = [pool.submit(kernel, lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]
    for future in futures:
        future.result()
