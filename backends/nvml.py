"""NVIDIA GPU energy through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

Preferred: the board's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since
the driver loaded; Volta and newer). It is refreshed only every 20-100 ms, so a region must last far
longer than that for the difference to mean anything: regions under `COUNTER_UPDATE_S` get no figure
and `tawq_core.measure.energy.measure_energy` repeats a workload for at least the backend's minimum window.
Fallback on older boards: ``nvmlDeviceGetPowerUsage`` (mW) sampled in a background thread and
integrated (see `_power`). Both are whole-board figures: other processes on the same GPU count too.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from tawq_backends._power import sampled_energy
from tawq_core import Availability, Measurement, MeterReading

#: The counter's slowest refresh period; a shorter region cannot be metered at all.
COUNTER_UPDATE_S = 0.1
#: Power-sampling fallback: 50 Hz, and at least this long a region.
SAMPLE_INTERVAL_S = 0.02
SAMPLED_MIN_WINDOW_S = 0.2
INSTALL_HINT = "nvidia-ml-py is not installed (pip install 'tawq[cuda]')"

HandleResolver = Callable[[ModuleType], Any]


def import_pynvml() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("pynvml"), ""
    except ImportError:
        return None, INSTALL_HINT


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def handle_by_uuid(pynvml: ModuleType, uuid: str) -> Any:
    """The NVML handle of the GPU whose UUID torch reports; NVML indices differ from CUDA ordinals when
    CUDA_VISIBLE_DEVICES reorders or hides devices, UUIDs do not."""
    want = uuid.removeprefix("GPU-").lower()
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        if _text(pynvml.nvmlDeviceGetUUID(handle)).removeprefix("GPU-").lower() == want:
            return handle
    raise LookupError(f"no NVML device has UUID {uuid} (MIG instance, or NVML sees other GPUs than CUDA)")


@contextmanager
def nvml_session(pynvml: ModuleType) -> Iterator[None]:
    pynvml.nvmlInit()
    try:
        yield
    finally:
        pynvml.nvmlShutdown()


def nvml_energy_availability(pynvml: ModuleType | None, resolve: HandleResolver) -> Availability:
    """Whether NVML can meter this GPU: library importable, initialisable, device found, and either the
    energy counter or the power reading supported."""
    if pynvml is None:
        return Availability(False, INSTALL_HINT)
    try:
        with nvml_session(pynvml):
            handle = resolve(pynvml)
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            except pynvml.NVMLError:
                pynvml.nvmlDeviceGetPowerUsage(handle)
    except Exception as exc:  # NVMLError subclasses, LookupError, driver library missing
        return Availability(False, f"NVML cannot meter this GPU: {type(exc).__name__}: {exc}")
    return Availability(True, "")


@contextmanager
def nvml_energy(
    pynvml: ModuleType | None,
    resolve: HandleResolver,
    synchronize: Callable[[], None],
    *,
    min_window_s: float = COUNTER_UPDATE_S,
) -> Iterator[MeterReading]:
    """Meter a region with the NVML energy counter, or with sampled NVML power where the counter is
    not supported; unavailable with the reason when NVML cannot be used."""
    ok, reason = nvml_energy_availability(pynvml, resolve)
    if not ok or pynvml is None:
        reading = MeterReading("J")
        yield reading
        reading.result = Measurement.unavailable("J", reason)
        return
    with nvml_session(pynvml):
        handle = resolve(pynvml)
        try:
            first_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except pynvml.NVMLError as exc:
            source = (f"NVML board power (nvmlDeviceGetPowerUsage, mW; the total-energy counter is not "
                      f"supported here: {exc})")
            with sampled_energy(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3, synchronize,
                                interval_s=SAMPLE_INTERVAL_S, source=source,
                                min_window_s=max(min_window_s, SAMPLED_MIN_WINDOW_S)) as reading:
                yield reading
            return
        reading = MeterReading("J")
        start = time.perf_counter()
        yield reading
        synchronize()
        last_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        window = time.perf_counter() - start
    details = {"window_s": window, "counter_start_mj": first_mj, "counter_end_mj": last_mj}
    if window < min_window_s:
        reading.result = Measurement.unavailable(
            "J", f"window {window:.3f} s is shorter than the NVML energy counter's update period "
                 f"(20-100 ms; {min_window_s:g} s required); repeat the workload "
                 "(tawq_core.measure.energy.measure_energy)", **details)
    elif last_mj < first_mj:
        reading.result = Measurement.unavailable(
            "J", "the NVML energy counter went backwards (driver reloaded during the region)", **details)
    else:
        reading.result = Measurement(
            (last_mj - first_mj) / 1e3, "J",
            f"NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ, refreshed every 20-100 ms) "
            f"differenced over a {window:.3f} s window; whole board, includes other processes on this GPU",
            details,
        )
