"""The hardware-backend interface: placement, synchronization, timing, memory and energy.

A backend never silently falls back to another device: `require()` raises `BackendUnavailable` with
the reason `is_available()` gave. Measurements return `Measurement`s that say how they were obtained.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import ClassVar, NamedTuple

import torch

from tawq_core.measure.measurement import Measurement
from tawq_core.plugin_api.errors import BackendUnavailable


class Availability(NamedTuple):
    """``(available, reason)``; the reason says what is missing when not available."""

    available: bool
    reason: str


class Timer(ABC):
    """Times one region of device work: ``with timer: ...`` then read `elapsed_s`.

    Device backends use device events; the CPU uses perf_counter_ns around a synchronize.
    """

    method: ClassVar[str] = ""

    @abstractmethod
    def __enter__(self) -> Timer: ...

    @abstractmethod
    def __exit__(self, *exc: object) -> None: ...

    @property
    @abstractmethod
    def elapsed_s(self) -> float: ...


class MeterReading:
    """Filled in by a memory or energy meter when its ``with`` block ends."""

    def __init__(self, unit: str):
        self.result: Measurement = Measurement.unavailable(unit, "measurement not finished")


#: The one meaning of "peak memory" on every backend, so the matrix column compares across them.
PEAK_MEMORY_DEFINITION = (
    "peak in-region increase: the most memory in use during the region minus what was in use when it began "
    "(weights and inputs resident before the region are not counted); the absolute peak is in details"
)


def peak_memory_measurement(peak_bytes: int, baseline_bytes: int, method: str, **details: object) -> Measurement:
    """A `Backend.peak_memory` result: value = the in-region increase; details hold both figures.

    `method` says how the backend read its two numbers (RSS, allocator statistics).
    """
    increase = max(int(peak_bytes) - int(baseline_bytes), 0)
    return Measurement(float(increase), "B", f"{PEAK_MEMORY_DEFINITION}; {method}",
                       {"region_increase_bytes": increase, "absolute_peak_bytes": int(peak_bytes),
                        "baseline_bytes": int(baseline_bytes), **details})


class Backend(ABC):
    """One kind of hardware. Subclasses are registered through the ``tawq_register_backends`` hook."""

    name: ClassVar[str] = ""
    #: torch.distributed backend for this hardware (gloo, nccl, hccl).
    dist_backend: ClassVar[str] = "gloo"
    #: Shortest region over which `energy_meter` gives a trustworthy figure (counter update period,
    #: power-sampling rate); `tawq_core.measure.energy.measure_energy` repeats the workload at least this long.
    energy_min_window_s: ClassVar[float] = 1.0

    @abstractmethod
    def is_available(self) -> Availability:
        """Whether this machine can run the backend, and if not, exactly what is missing."""

    def require(self) -> Backend:
        ok, reason = self.is_available()
        if not ok:
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: {reason}")
        return self

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until queued device work has finished (no-op on CPU)."""

    @abstractmethod
    def timer(self) -> Timer: ...

    @abstractmethod
    def peak_memory(self) -> AbstractContextManager[MeterReading]:
        """``with backend.peak_memory() as m: ...``; then ``m.result`` is the peak in-region increase in bytes
        (`PEAK_MEMORY_DEFINITION`, built by `peak_memory_measurement`), the absolute peak in its details."""

    @abstractmethod
    def energy_meter(self) -> AbstractContextManager[MeterReading]:
        """``with backend.energy_meter() as m: ...``; then ``m.result`` is joules or unavailable."""

    def energy_availability(self) -> Availability:
        """Whether `energy_meter` can give a figure here, checked without running any workload.

        The default answers "try it"; backends whose meter may be absent override this so a runner
        can record the reason at once instead of repeating a workload for nothing.
        """
        return Availability(True, "")

    def describe(self) -> dict[str, str]:
        """Hardware facts recorded with every result (device name, driver...)."""
        return {"backend": self.name}


def iter_available(backends: list[Backend]) -> Iterator[Backend]:
    """Backends that can run here, in the order given."""
    return (b for b in backends if b.is_available().available)
