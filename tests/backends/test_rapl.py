"""RAPL package energy, read from stand-in powercap sysfs trees built in temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tawq_backends.rapl import energy_delta_uj, find_zones, rapl_availability, rapl_energy

MAX_RANGE_UJ = 262_143_328_850


def _zone(root: Path, dirname: str, name: str, energy_uj: int, max_range: int = MAX_RANGE_UJ) -> Path:
    zone = root / dirname
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{name}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone / "energy_uj"


@pytest.fixture
def fake_rapl_sysfs(tmp_path) -> dict[str, Path]:
    """A stand-in /sys/class/powercap: two packages, one core sub-zone, one psys zone."""
    root = tmp_path / "fake_powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control-type directory has no counter
    files = {
        "root": root,
        "package-0": _zone(root, "intel-rapl:0", "package-0", 1_000_000),
        "core": _zone(root, "intel-rapl:0:0", "core", 500_000),
        "package-1": _zone(root, "intel-rapl:1", "package-1", 2_000_000),
        "psys": _zone(root, "intel-rapl:2", "psys", 9_000_000),
    }
    return files


def test_wrap_around_uses_max_energy_range():
    assert energy_delta_uj(100, 250, 1000) == 150
    assert energy_delta_uj(900, 50, 1000) == 150


def test_only_package_zones_are_summed(fake_rapl_sysfs):
    zones, reason = find_zones(fake_rapl_sysfs["root"])
    assert reason == ""
    assert [z.name for z in zones] == ["package-0", "package-1"]


def test_psys_alone_is_used(tmp_path):
    root = tmp_path / "fake_powercap"
    _zone(root, "intel-rapl:0", "psys", 10)
    zones, _ = find_zones(root)
    assert [z.name for z in zones] == ["psys"]


def test_meter_sums_package_deltas(fake_rapl_sysfs):
    with rapl_energy(fake_rapl_sysfs["root"], min_window_s=0.0) as reading:
        fake_rapl_sysfs["package-0"].write_text("3500000\n")  # +2.5 J
        fake_rapl_sysfs["package-1"].write_text("2250000\n")  # +0.25 J
        fake_rapl_sysfs["core"].write_text("99000000\n")  # a sub-zone: must not count
        fake_rapl_sysfs["psys"].write_text("99000000\n")  # overlaps the packages: must not count
    result = reading.result
    assert result.value == pytest.approx(2.75)
    assert result.unit == "J"
    assert "RAPL" in result.method and "package-0, package-1" in result.method


def test_meter_handles_counter_wrap(tmp_path):
    root = tmp_path / "fake_powercap"
    energy = _zone(root, "intel-rapl:0", "package-0", 990_000, max_range=1_000_000)
    with rapl_energy(root, min_window_s=0.0) as reading:
        energy.write_text("40000\n")
    assert reading.result.value == pytest.approx(0.05)


def test_meter_synchronizes_before_the_final_read(fake_rapl_sysfs):
    order = []

    def sync() -> None:
        order.append("sync")
        fake_rapl_sysfs["package-0"].write_text("2000000\n")  # work that finished only at the sync

    with rapl_energy(fake_rapl_sysfs["root"], sync, min_window_s=0.0) as reading:
        order.append("body")
    assert order == ["body", "sync"]
    assert reading.result.value == pytest.approx(1.0)


def test_missing_powercap_is_unavailable_with_reason(tmp_path):
    ok, reason = rapl_availability(tmp_path / "absent")
    assert not ok and "no powercap interface" in reason
    with rapl_energy(tmp_path / "absent") as reading:
        pass
    assert not reading.result.available
    assert "no powercap interface" in reading.result.method


def test_empty_powercap_is_unavailable(tmp_path):
    ok, reason = rapl_availability(tmp_path)
    assert not ok and "no RAPL zones" in reason


def test_unreadable_counters_are_unavailable_with_reason(fake_rapl_sysfs, monkeypatch):
    original = Path.read_text

    def deny_energy(self: Path, *args, **kwargs) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", deny_energy)
    ok, reason = rapl_availability(fake_rapl_sysfs["root"])
    assert not ok and "not readable" in reason and "root" in reason


def test_too_short_window_gives_no_figure(fake_rapl_sysfs):
    with rapl_energy(fake_rapl_sysfs["root"], min_window_s=60.0) as reading:
        pass
    assert not reading.result.available
    assert "shorter than the RAPL update period" in reading.result.method
