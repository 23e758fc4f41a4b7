"""The shared cuda/npu logic (event timing, allocator peak memory) against a stand-in device API."""

from __future__ import annotations

import pytest

from tawq_backends._accelerator import AcceleratorBackend, EventTimer
from tawq_backends.cuda import CudaBackend
from tawq_backends.npu import NpuBackend
from tawq_core import Availability, BackendUnavailable
from tawq_core.plugin_api.backend import PEAK_MEMORY_DEFINITION


def _backend_on(api, available: bool = True, index: int = 1) -> AcceleratorBackend:
    class StandInAccelerator(AcceleratorBackend):
        name = "stand-in-accelerator"
        device_type = "cpu"  # any real torch device type; the stand-in never touches hardware
        api_name = "stand_in_api"

        def is_available(self) -> Availability:
            return Availability(available, "" if available else "stand-in device switched off")

        def _api(self):
            return api

        def energy_meter(self):
            raise NotImplementedError

    return StandInAccelerator(index)


def test_event_timer_converts_device_milliseconds_to_seconds(stand_in_device_api):
    backend = _backend_on(stand_in_device_api)
    timer = backend.timer()
    assert isinstance(timer, EventTimer)
    with timer:
        stand_in_device_api.clock_ms += 12.5
    assert timer.elapsed_s == pytest.approx(0.0125)
    assert timer._start.stream == "stream-1" and timer._end.stream == "stream-1"


def test_event_timer_refuses_reading_before_the_region_ends(stand_in_device_api):
    timer = _backend_on(stand_in_device_api).timer()
    with pytest.raises(RuntimeError, match="before the timed region ended"):
        _ = timer.elapsed_s


def test_peak_memory_resets_the_stale_peak_before_the_region(stand_in_device_api):
    api = stand_in_device_api
    backend = _backend_on(api)
    with backend.peak_memory() as reading:
        api.allocate(300)
        api.free(300)
    result = reading.result
    assert result.value == 300  # the in-region increase, as on every backend: weights (1000) are not counted
    assert result.details["absolute_peak_bytes"] == 1300  # the stale 5000-byte peak was reset
    assert result.details["baseline_bytes"] == 1000
    assert result.details["region_increase_bytes"] == 300
    assert result.method.startswith(PEAK_MEMORY_DEFINITION)
    assert api.calls[:2] == ["synchronize(1)", "reset(1)"] and api.calls[-1] == "synchronize(1)"
    assert "max_memory_allocated" in result.method and "reset_peak_memory_stats" in result.method


def test_unavailable_accelerator_raises_on_use(stand_in_device_api):
    backend = _backend_on(stand_in_device_api, available=False)
    for use in (lambda: backend.device, backend.synchronize, backend.timer):
        with pytest.raises(BackendUnavailable, match="stand-in device switched off"):
            use()
    with pytest.raises(BackendUnavailable):
        with backend.peak_memory():
            pass


def test_device_and_synchronize_use_the_index(stand_in_device_api):
    backend = _backend_on(stand_in_device_api, index=3)
    assert str(backend.device) == "cpu:3"
    backend.synchronize()
    assert stand_in_device_api.calls == ["synchronize(3)"]


def test_dist_backends_and_timer_methods():
    assert CudaBackend.dist_backend == "nccl"
    assert NpuBackend.dist_backend == "hccl"
    assert "torch.cuda.Event" in CudaBackend.timer_class.method
    assert "torch.npu.Event" in NpuBackend.timer_class.method
