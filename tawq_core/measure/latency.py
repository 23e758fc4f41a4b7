"""Latency of a workload on a backend: warm-up, then repeated timed calls, median and p90.

Each call is timed on its own with the backend's timer (device events on accelerators, perf_counter
on the CPU), so the figure is device time per call and the spread shows up in p90. Warm-up calls are
not timed: they absorb one-off costs (kernel selection, allocator growth, lazy initialisation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tawq_core.plugin_api.backend import Backend
from tawq_core.plugin_api.errors import ConfigError, PluginError
from tawq_core.validators import check_int_at_least


@dataclass(frozen=True)
class LatencyStats:
    """Seconds per call of the timed workload; `method` says which timer produced `samples`."""

    median_s: float
    p90_s: float
    mean_s: float
    samples: tuple[float, ...]
    method: str
    warmup: int

    @classmethod
    def from_samples(cls, samples: list[float], method: str, warmup: int = 0) -> LatencyStats:
        if not samples:
            raise ConfigError("latency statistics need at least one timed sample")
        values = np.asarray(samples, dtype=np.float64)
        return cls(float(np.median(values)), float(np.percentile(values, 90)), float(values.mean()),
                   tuple(float(v) for v in samples), method, warmup)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "p90_s": self.p90_s, "mean_s": self.mean_s,
                "repeats": len(self.samples), "warmup": self.warmup, "samples_s": list(self.samples),
                "method": self.method}


def _check_counts(warmup: int, repeats: int) -> None:
    check_int_at_least("warmup", warmup, 0)
    check_int_at_least("repeats", repeats, 1)


def measure_latency(backend: Backend, fn: Callable[[], Any], warmup: int = 3, repeats: int = 20) -> LatencyStats:
    """Call `fn` `warmup` times untimed, then `repeats` times, each inside ``backend.timer()``.

    `fn` must do the whole workload on the backend's device (inputs already placed there); the timer
    synchronizes at its end, so asynchronous device work is included.
    """
    _check_counts(warmup, repeats)
    for _ in range(warmup):
        fn()
    backend.synchronize()
    samples: list[float] = []
    method = ""
    for _ in range(repeats):
        timer = backend.timer()
        with timer:
            fn()
        elapsed = timer.elapsed_s
        if not elapsed > 0:  # NaN, zero or negative: a broken timer, never a latency to divide by
            raise PluginError(f"backend {backend.name!r}: its timer measured {elapsed} s for a timed call; a "
                              f"timer must measure real time (check it with: tawq plugins --check {backend.name})")
        samples.append(elapsed)
        method = timer.method
    return LatencyStats.from_samples(samples, f"{method}; median and p90 of {repeats} calls after {warmup} "
                                              "untimed warm-up calls", warmup)
