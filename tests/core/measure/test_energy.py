"""Energy-model presets, estimates from operation counts, and measure_energy with stand-in meters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from tawq_backends.cpu import CpuBackend
from tawq_core import Availability, ConfigError, Measurement, MeterReading, mark
from tawq_core.measure.energy import EnergyModel, energy_models, estimate_energy, get_energy_model, measure_energy
from tawq_core.measure.sops import LayerOps, OpsReport, count_ops


def test_presets_are_the_horowitz_45nm_figures():
    models = energy_models()
    assert (models["45nm-fp32"].e_mac_pj, models["45nm-fp32"].e_ac_pj) == (4.6, 0.9)
    assert (models["45nm-fp16"].e_mac_pj, models["45nm-fp16"].e_ac_pj) == (1.5, 0.4)
    assert (models["45nm-int8"].e_mac_pj, models["45nm-int8"].e_ac_pj) == (0.23, 0.03)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown energy model '7nm'; known: 45nm-fp16, 45nm-fp32, 45nm-int8"):
        get_energy_model("7nm")


def report_with(conv_mac: float, conv_ac: float, exact_mac: float, exact_ac: float) -> OpsReport:
    row = LayerOps("l", "Conv2d", "mixed", "test", conventional_mac=conv_mac, conventional_ac=conv_ac,
                   exact_mac=exact_mac, exact_ac=exact_ac)
    return OpsReport(4, 1, (row,), (), None)


def test_estimate_both_conventions_by_hand():
    estimate = estimate_energy(report_with(1e6, 2e6, 0.9e6, 0.5e6), "45nm-fp32")
    assert estimate["conventional"].value == pytest.approx((4.6 * 1e6 + 0.9 * 2e6) * 1e-12)
    assert estimate["exact"].value == pytest.approx((4.6 * 0.9e6 + 0.9 * 0.5e6) * 1e-12)
    assert "conventional (syops)" in estimate["conventional"].method
    assert "exact ternary-aware" in estimate["exact"].method
    assert estimate["exact"].details == {"mac_ops": 0.9e6, "ac_ops": 0.5e6, "convention": "exact"}
    assert estimate["energy_model"]["name"] == "45nm-fp32"
    custom = estimate_energy(report_with(1, 1, 1, 1), EnergyModel("custom", 2.0, 1.0))
    assert custom["conventional"].value == pytest.approx(3e-12)


def test_stem_energy_is_t_times_macs_at_e_mac():
    """A marked stem on analog input costs E_MAC · T · MACs; at Spikingformer-8-512's 224x224 stem that is
    0.347 G MACs x 4.6 pJ = 1.6 mJ of the paper's 7.46 mJ."""
    stem = mark(nn.Conv2d(3, 64, 3, padding=1, bias=False), "stem")
    x = torch.rand(4, 2, 3, 8, 8) + 0.1
    report = count_ops(nn.Sequential(nn.Flatten(0, 1), stem), x)
    macs = 4 * 3 * 64 * 9 * 8 * 8
    assert report.conventional_mac == macs and report.conventional_ac == 0
    assert estimate_energy(report)["conventional"].value == pytest.approx(4.6e-12 * macs)
    assert 4.6e-12 * 4 * 3 * 64 * 9 * 224**2 == pytest.approx(1.596e-3, rel=1e-3)


class StandInMeterBackend(CpuBackend):
    """A stand-in backend whose meter reports 0.25 J for every call of the workload it saw."""

    def __init__(self, available: bool = True):
        super().__init__()
        self.available, self.calls = available, 0

    def energy_availability(self) -> Availability:
        return Availability(self.available, "" if self.available else "stand-in meter switched off")

    @contextmanager
    def energy_meter(self) -> Iterator[MeterReading]:
        reading = MeterReading("J")
        start = self.calls
        yield reading
        reading.result = Measurement(0.25 * (self.calls - start), "J", "stand-in meter", {"window_s": 0.0})


def test_measure_energy_divides_by_the_calls_in_the_window():
    backend = StandInMeterBackend()

    def work() -> None:
        backend.calls += 1

    result = measure_energy(backend, work, min_seconds=0.02)
    assert result.value == pytest.approx(0.25)
    assert result.details["calls"] >= 1 and result.details["total_j"] == pytest.approx(0.25 * result.details["calls"])
    assert "stand-in meter" in result.method and "divided by the calls" in result.method


def test_measure_energy_respects_max_calls():
    backend = StandInMeterBackend()

    def work() -> None:
        backend.calls += 1

    result = measure_energy(backend, work, min_seconds=60.0, max_calls=7)
    assert result.details["calls"] == 7


def test_unavailable_meter_does_not_run_the_workload():
    backend = StandInMeterBackend(available=False)
    result = measure_energy(backend, lambda: pytest.fail("workload ran without a meter"))
    assert result.method == "unavailable: stand-in meter switched off"


def test_measure_energy_through_the_cpu_backend_and_a_fake_rapl_sysfs(tmp_path):
    zone = tmp_path / "fake_rapl_sysfs" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("1000000\n")
    counter = zone / "energy_uj"
    counter.write_text("999000\n")

    def work() -> None:  # every call "uses" 1 mJ on the stand-in counter, wrapping past 1 J
        counter.write_text(f"{(int(counter.read_text()) + 1000) % 1_000_000}\n")

    result = measure_energy(CpuBackend(rapl_root=str(zone.parent)), work, min_seconds=0.05)
    assert result.value == pytest.approx(1e-3)
    assert "RAPL" in result.method


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1"])
def test_bad_window_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        measure_energy(StandInMeterBackend(), lambda: None, min_seconds=bad)


def test_measure_energy_on_this_machines_cpu_is_honest():
    backend = CpuBackend(rapl_root=str(Path("/nonexistent/powercap")))
    result = measure_energy(backend, lambda: None)
    assert not result.available and "no powercap interface" in result.method
