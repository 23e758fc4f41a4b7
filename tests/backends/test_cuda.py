"""The cuda backend: availability here, and the NVML energy paths against a stand-in pynvml module."""

from __future__ import annotations

import sys
import time
import types

import pytest
import torch

from tawq_backends import cuda as cuda_module
from tawq_backends.cuda import CudaBackend, cuda_availability
from tawq_backends.nvml import INSTALL_HINT, handle_by_uuid, nvml_energy, nvml_energy_availability
from tawq_core import Availability, BackendUnavailable, create

HAS_CUDA = torch.cuda.is_available()


class StandInNVMLError(Exception):
    pass


def make_stand_in_pynvml(counter_supported: bool = True, power_mw: int = 150_000,
                         uuids: tuple[str, ...] = ("GPU-aaaa", "GPU-bbbb")) -> types.ModuleType:
    """A stand-in for the `pynvml` module of nvidia-ml-py; the energy counter advances by hand."""
    nv = types.ModuleType("stand_in_pynvml")
    nv.NVMLError = StandInNVMLError
    nv.energy_mj = {u: 1_000_000 for u in uuids}
    nv.initialised = 0
    nv.nvmlInit = lambda: setattr(nv, "initialised", nv.initialised + 1)
    nv.nvmlShutdown = lambda: setattr(nv, "initialised", nv.initialised - 1)
    nv.nvmlDeviceGetCount = lambda: len(uuids)
    nv.nvmlDeviceGetHandleByIndex = lambda i: uuids[i]
    nv.nvmlDeviceGetUUID = lambda handle: handle.encode()  # old nvidia-ml-py returned bytes
    nv.nvmlSystemGetDriverVersion = lambda: "550.54"

    def total_energy(handle: str) -> int:
        if not counter_supported:
            raise StandInNVMLError("Not Supported")
        return nv.energy_mj[handle]

    nv.nvmlDeviceGetTotalEnergyConsumption = total_energy
    nv.nvmlDeviceGetPowerUsage = lambda handle: power_mw
    return nv


def by_uuid(uuid: str):
    return lambda nv: handle_by_uuid(nv, uuid)


def test_cuda_availability_matches_torch():
    ok, reason = cuda_availability()
    assert ok == HAS_CUDA
    if not ok:
        assert "CUDA" in reason


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-GPU path")
def test_unavailable_cuda_is_a_tawq_error_with_the_reason():
    backend = create("backend", "cuda")
    with pytest.raises(BackendUnavailable, match="backend 'cuda' is unavailable: "):
        backend.require()
    assert "unavailable" in backend.describe()
    ok, reason = backend.energy_availability()
    assert not ok and reason == backend.is_available().reason
    with backend.energy_meter() as reading:
        pass
    assert not reading.result.available and "CUDA" in reading.result.method


def test_index_beyond_the_visible_devices_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cuda_availability(0) == Availability(True, "")
    ok, reason = cuda_availability(3)
    assert not ok and "index 3 does not exist (1 visible)" in reason


def test_handle_is_found_by_uuid_whatever_the_prefix():
    nv = make_stand_in_pynvml()
    assert handle_by_uuid(nv, "bbbb") == "GPU-bbbb"
    assert handle_by_uuid(nv, "GPU-AAAA") == "GPU-aaaa"
    with pytest.raises(LookupError, match="no NVML device has UUID cccc"):
        handle_by_uuid(nv, "cccc")


def test_counter_difference_in_millijoules_becomes_joules():
    nv = make_stand_in_pynvml()
    synced = []

    def sync() -> None:
        synced.append(True)
        nv.energy_mj["GPU-bbbb"] += 12_345  # the GPU finishes its queued work at the synchronize

    with nvml_energy(nv, by_uuid("bbbb"), sync, min_window_s=0.0) as reading:
        nv.energy_mj["GPU-aaaa"] += 999_999  # another GPU: must not count
    result = reading.result
    assert synced == [True]
    assert result.value == pytest.approx(12.345)
    assert "nvmlDeviceGetTotalEnergyConsumption" in result.method
    assert result.details["counter_end_mj"] - result.details["counter_start_mj"] == 12_345
    assert nv.initialised == 0  # every nvmlInit was matched by nvmlShutdown


def test_counter_window_shorter_than_its_update_period_gives_no_figure():
    nv = make_stand_in_pynvml()
    with nvml_energy(nv, by_uuid("aaaa"), lambda: None, min_window_s=5.0) as reading:
        nv.energy_mj["GPU-aaaa"] += 10
    assert not reading.result.available
    assert "update period" in reading.result.method and "measure_energy" in reading.result.method


def test_counter_going_backwards_gives_no_figure():
    nv = make_stand_in_pynvml()
    with nvml_energy(nv, by_uuid("aaaa"), lambda: None, min_window_s=0.0) as reading:
        nv.energy_mj["GPU-aaaa"] = 5
    assert not reading.result.available and "backwards" in reading.result.method


def test_power_sampling_fallback_when_the_counter_is_not_supported(monkeypatch):
    monkeypatch.setattr("tawq_backends.nvml.SAMPLED_MIN_WINDOW_S", 0.0)
    nv = make_stand_in_pynvml(counter_supported=False, power_mw=150_000)
    with nvml_energy(nv, by_uuid("aaaa"), lambda: None, min_window_s=0.0) as reading:
        time.sleep(0.06)
    result = reading.result
    assert result.available
    assert result.value == pytest.approx(150.0 * result.details["window_s"])
    assert "nvmlDeviceGetPowerUsage" in result.method and "not supported" in result.method
    assert nv.initialised == 0


def test_missing_nvidia_ml_py_and_unknown_device_are_reasons():
    assert nvml_energy_availability(None, by_uuid("aaaa")) == Availability(False, INSTALL_HINT)
    ok, reason = nvml_energy_availability(make_stand_in_pynvml(), by_uuid("zzzz"))
    assert not ok and "no NVML device has UUID zzzz" in reason
    with nvml_energy(None, by_uuid("aaaa"), lambda: None) as reading:
        pass
    assert reading.result.method == f"unavailable: {INSTALL_HINT}"


def test_cuda_backend_wires_nvml_with_stand_ins(monkeypatch, stand_in_device_api):
    """The backend's own energy_meter, with CUDA and NVML both replaced by stand-ins."""
    nv = make_stand_in_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    monkeypatch.setattr(cuda_module, "cuda_availability", lambda index=0: Availability(True, ""))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(uuid="bbbb"))
    monkeypatch.setattr(CudaBackend, "_api", lambda self: stand_in_device_api)
    backend = CudaBackend()
    assert backend.energy_availability() == Availability(True, "")
    with backend.energy_meter() as reading:
        nv.energy_mj["GPU-bbbb"] += 2_000
        time.sleep(0.11)  # longer than the counter's update period
    assert reading.result.value == pytest.approx(2.0)
    assert "synchronize(0)" in stand_in_device_api.calls


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_real_gpu_timer_memory_and_energy():
    backend = create("backend", "cuda").require()
    x = torch.randn(1024, 1024, device=backend.device)
    timer = backend.timer()
    with timer:
        (x @ x).sum()
    assert timer.elapsed_s > 0
    with backend.peak_memory() as memory:
        y = torch.empty(64 * 2**20, dtype=torch.uint8, device=backend.device)
        del y
    assert memory.result.value >= 64 * 2**20
    ok, reason = backend.energy_availability()
    with backend.energy_meter() as energy:
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            x @ x
    if ok:
        assert energy.result.value > 0, energy.result.method
    else:
        assert not energy.result.available and reason in energy.result.method
    assert backend.describe()["device"]
