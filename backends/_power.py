"""Energy from sampled power: a background sampler and the trapezoid integral over a region.

Used where the hardware exposes power but no energy counter (Ascend `npu-smi`, NVML on GPUs without
the total-energy counter). The integral covers exactly the region's wall-clock window: samples are
interpolated linearly and the first/last reading is held constant up to the window's edges, so slow
readers (an `npu-smi` call takes tens of milliseconds) neither lose nor add time at the boundaries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from tawq_core import Measurement, MeterReading

Sample = tuple[float, float]  # (time in s on `time.perf_counter`, power in W)


def integrate_power(samples: list[Sample], start: float, end: float) -> float:
    """Joules over ``[start, end]`` from (time, watts) samples: trapezoid on linear interpolation."""
    if end <= start or not samples:
        return 0.0
    ts = np.array([t for t, _ in samples], dtype=np.float64)
    ps = np.array([p for _, p in samples], dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    ts, ps = ts[order], ps[order]
    inside = ts[(ts > start) & (ts < end)]
    grid = np.concatenate(([start], inside, [end]))
    watts = np.interp(grid, ts, ps)  # holds the end values constant outside the sampled range
    return float(np.sum((watts[1:] + watts[:-1]) * np.diff(grid)) / 2.0)


class PowerSampler:
    """Calls `read_watts` every `interval_s` in a daemon thread until stopped.

    Each sample is stamped at the midpoint of its read call. A failing read stops the sampling and is
    kept in `error`, so a meter can say why it has no figure instead of integrating a partial trace.
    """

    def __init__(self, read_watts: Callable[[], float], interval_s: float):
        self.read_watts = read_watts
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tawq-power-sampler", daemon=True)

    def sample_once(self) -> bool:
        before = time.perf_counter()
        try:
            watts = float(self.read_watts())
        except Exception as exc:  # the reader runs external tools; any failure ends the trace
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            return False
        self.samples.append(((before + time.perf_counter()) / 2.0, watts))
        return True

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            if not self.sample_once():
                return
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def sampled_energy(
    read_watts: Callable[[], float],
    synchronize: Callable[[], None],
    *,
    interval_s: float,
    source: str,
    min_window_s: float,
) -> Iterator[MeterReading]:
    """Meter a region by sampling power in the background and integrating it (trapezoid).

    One reading is taken before the region and one after it (after `synchronize`), so even a region
    shorter than the interval is bracketed; regions shorter than `min_window_s` get no figure.
    """
    reading = MeterReading("J")
    sampler = PowerSampler(read_watts, interval_s)
    if not sampler.sample_once():
        yield reading
        reading.result = Measurement.unavailable("J", f"{source} could not be read: {sampler.error}")
        return
    sampler.start()
    start = time.perf_counter()
    try:
        yield reading
        synchronize()
    finally:
        end = time.perf_counter()
        sampler.stop()
    if sampler.error is None:
        sampler.sample_once()
    window = end - start
    details = {"window_s": window, "samples": len(sampler.samples), "interval_s": interval_s}
    if sampler.error is not None:
        reading.result = Measurement.unavailable("J", f"{source} failed while sampling: {sampler.error}",
                                                 **details)
    elif window < min_window_s:
        reading.result = Measurement.unavailable(
            "J", f"window {window:.3f} s is shorter than the {min_window_s:g} s this power sampling needs; "
                 "repeat the workload (tawq_core.measure.energy.measure_energy)", **details)
    else:
        rate = (len(sampler.samples) - 1) / max(sampler.samples[-1][0] - sampler.samples[0][0], 1e-9)
        details["rate_hz"] = rate
        reading.result = Measurement(
            integrate_power(sampler.samples, start, end), "J",
            f"{source} sampled in a background thread (target {1 / interval_s:g} Hz, achieved {rate:.1f} Hz, "
            f"{len(sampler.samples)} samples), trapezoid-integrated over the {window:.3f} s window",
            details,
        )
