"""`cpu`: always available; perf_counter timing, peak-RSS memory, RAPL package energy where readable."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from tawq_backends.rapl import DEFAULT_ROOT, MIN_WINDOW_S, rapl_availability, rapl_energy
from tawq_core import Availability, Backend, Measurement, MeterReading, Timer, hookimpl
from tawq_core.plugin import cpu_model_name, peak_memory_measurement

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


class PerfCounterTimer(Timer):
    method = "time.perf_counter_ns around the region (CPU work is synchronous, nothing to synchronize)"

    def __enter__(self) -> PerfCounterTimer:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self._elapsed = (time.perf_counter_ns() - self._start) / 1e9

    @property
    def elapsed_s(self) -> float:
        return self._elapsed


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False if refused."""
    try:
        PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _release_free_heap() -> None:
    """Hand memory freed earlier back to the OS (glibc malloc_trim), so allocations in the region that
    would otherwise reuse retained heap pages show up as RSS growth."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
        if trim is not None:
            trim(0)


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


PEAK_RSS_METHOD = (
    "resident set size of the whole process (all threads): peak = /proc/self/status VmHWM, reset to the "
    "current RSS through /proc/self/clear_refs before the region (after gc and malloc_trim); baseline = "
    "VmRSS at the start"
)
MAXRSS_METHOD = (
    "growth of the process's lifetime RSS high-water mark (getrusage ru_maxrss) over the region; a lower "
    "bound on what the region added, because the peak could not be reset here (baseline = the earlier "
    "high-water mark, not the RSS at the start)"
)


class CpuBackend(Backend):
    name = "cpu"
    dist_backend = "gloo"
    energy_min_window_s = 0.5

    def __init__(self, rapl_root: str | None = None):
        self.rapl_root = Path(rapl_root) if rapl_root is not None else DEFAULT_ROOT

    def is_available(self) -> Availability:
        return Availability(True, "")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def synchronize(self) -> None:
        """CPU kernels have finished when the call returns; nothing is queued."""

    def timer(self) -> Timer:
        return PerfCounterTimer()

    @contextmanager
    def peak_memory(self) -> Iterator[MeterReading]:
        reading = MeterReading("B")
        _release_free_heap()
        baseline = _status_bytes("VmRSS")
        if baseline is not None and _reset_rss_peak():
            yield reading
            peak = _status_bytes("VmHWM") or 0
            reading.result = peak_memory_measurement(peak, baseline, PEAK_RSS_METHOD)
            return
        before = _max_rss_bytes()
        yield reading
        after = _max_rss_bytes()
        if after > before:
            reading.result = peak_memory_measurement(after, before, MAXRSS_METHOD)
        else:
            reading.result = Measurement.unavailable(
                "B", "the region stayed below the process's earlier RSS peak and that peak cannot be reset "
                     "here (/proc/self/clear_refs is Linux-only)")

    def energy_availability(self) -> Availability:
        return rapl_availability(self.rapl_root)

    def energy_meter(self) -> Iterator[MeterReading]:
        return rapl_energy(self.rapl_root, self.synchronize, MIN_WINDOW_S)

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "device": cpu_model_name(),
            "logical_cpus": str(os.cpu_count()),
            "torch_threads": str(torch.get_num_threads()),
            "torch": torch.__version__,
            "platform": platform.platform(),
        }


@hookimpl
def tawq_register_backends(register):
    register("cpu", CpuBackend)
