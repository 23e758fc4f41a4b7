"""`cpu`: always available; perf_counter timing, RSS high-water memory."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from tawq_core import Availability, Backend, Measurement, MeterReading, Timer, hookimpl


class PerfCounterTimer(Timer):
    method = "time.perf_counter_ns around the region (CPU work is synchronous)"

    def __enter__(self) -> PerfCounterTimer:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self._elapsed = (time.perf_counter_ns() - self._start) / 1e9

    @property
    def elapsed_s(self) -> float:
        return self._elapsed


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


class CpuBackend(Backend):
    name = "cpu"
    dist_backend = "gloo"

    def is_available(self) -> Availability:
        return Availability(True, "")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def synchronize(self) -> None:
        pass

    def timer(self) -> Timer:
        return PerfCounterTimer()

    @contextmanager
    def peak_memory(self) -> Iterator[MeterReading]:
        reading = MeterReading("B")
        before = _max_rss_bytes()
        yield reading
        reading.result = Measurement(
            float(_max_rss_bytes() - before), "B",
            "process RSS high-water mark (getrusage ru_maxrss) growth over the region; 0 if the "
            "region stayed below an earlier peak",
        )

    @contextmanager
    def energy_meter(self) -> Iterator[MeterReading]:
        reading = MeterReading("J")
        yield reading
        reading.result = Measurement.unavailable("J", "no CPU energy counter implemented yet")


@hookimpl
def tawq_register_backends(register):
    register("cpu", CpuBackend)
