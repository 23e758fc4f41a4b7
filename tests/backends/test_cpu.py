"""The cpu backend: timing, peak-RSS memory, and RAPL energy from a stand-in sysfs tree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tawq_backends import cpu as cpu_module
from tawq_backends.cpu import CpuBackend
from tawq_core import Availability, create, list_plugins
from tawq_core.plugin_api.backend import PEAK_MEMORY_DEFINITION


def test_all_three_backends_are_registered():
    assert {"cpu", "cuda", "npu"} <= set(list_plugins("backend"))


def test_cpu_is_available_and_uses_gloo():
    backend = create("backend", "cpu")
    assert backend.is_available() == Availability(True, "")
    assert backend.require() is backend
    assert backend.device == torch.device("cpu")
    assert backend.dist_backend == "gloo"
    facts = backend.describe()
    assert facts["backend"] == "cpu" and facts["torch"] == torch.__version__ and facts["device"]


def test_timer_covers_the_region():
    timer = CpuBackend().timer()
    with timer:
        time.sleep(0.02)
    assert timer.elapsed_s >= 0.02
    assert "perf_counter_ns" in timer.method


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_a_freed_allocation():
    backend = CpuBackend()
    nbytes = 48 * 2**20
    with backend.peak_memory() as reading:
        block = torch.ones(nbytes // 4)  # touched pages: resident
        del block  # freed before the region ends: only the peak remembers it
    result = reading.result
    assert result.value >= 0.9 * nbytes
    assert result.details["absolute_peak_bytes"] - result.details["baseline_bytes"] == result.value
    assert result.details["region_increase_bytes"] == result.value
    assert "VmHWM" in result.method and result.method.startswith(PEAK_MEMORY_DEFINITION)


def test_peak_memory_falls_back_to_getrusage(monkeypatch):
    monkeypatch.setattr(cpu_module, "_reset_rss_peak", lambda: False)
    backend = CpuBackend()
    with backend.peak_memory() as reading:
        pass  # nothing new: the earlier process peak is not exceeded
    assert not reading.result.available
    assert "earlier RSS peak" in reading.result.method
    peaks = iter([1000 * 2**20, 1100 * 2**20])
    monkeypatch.setattr(cpu_module, "_max_rss_bytes", lambda: next(peaks))
    with backend.peak_memory() as reading:
        pass
    assert reading.result.value == 100 * 2**20 and reading.result.details["absolute_peak_bytes"] == 1100 * 2**20
    assert "ru_maxrss" in reading.result.method and "lower bound" in reading.result.method


def test_energy_is_unavailable_without_rapl(tmp_path):
    backend = CpuBackend(rapl_root=str(tmp_path / "no_powercap"))
    ok, reason = backend.energy_availability()
    assert not ok and "no powercap interface" in reason
    with backend.energy_meter() as reading:
        pass
    assert not reading.result.available and "no powercap interface" in reading.result.method


def test_energy_from_a_fake_rapl_sysfs(tmp_path):
    zone = tmp_path / "fake_rapl_sysfs" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    (zone / "energy_uj").write_text("5000000\n")
    backend = CpuBackend(rapl_root=str(zone.parent))
    assert backend.energy_availability() == Availability(True, "")
    with backend.energy_meter() as reading:
        (zone / "energy_uj").write_text("5400000\n")
        time.sleep(0.02)
    assert reading.result.value == pytest.approx(0.4)
