"""CPU package energy from RAPL counters in the Linux powercap sysfs tree.

Each top-level zone ``intel-rapl:<n>`` (one per CPU package; AMD's driver uses the same names) has a
cumulative ``energy_uj`` counter that wraps at ``max_energy_range_uj``. Sub-zones (``intel-rapl:0:0``
core, ``:1`` uncore, ``:2`` dram) are parts of a package and would be counted twice, and ``psys``
(whole platform) overlaps the packages, so only package zones are summed (psys only when it is the
sole zone). The sysfs root is a parameter so tests can point it at a stand-in tree.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tawq_core import Availability, Measurement, MeterReading

DEFAULT_ROOT = Path("/sys/class/powercap")
ZONE_NAME = re.compile(r"^intel-rapl:\d+$")
#: RAPL counters update about every millisecond; shorter regions get no figure.
MIN_WINDOW_S = 0.01


@dataclass(frozen=True)
class RaplZone:
    name: str  # e.g. package-0
    energy_file: Path
    max_range_uj: int

    def read_uj(self) -> int:
        return int(self.energy_file.read_text().strip())


def energy_delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Counter difference, allowing for one wrap-around at `max_range_uj` (keep windows shorter than
    max_range / power, minutes at server power)."""
    return after - before if after >= before else after + max_range_uj - before


def find_zones(root: Path = DEFAULT_ROOT) -> tuple[list[RaplZone], str]:
    """The package zones to sum, or an empty list and the reason none can be used."""
    if not root.is_dir():
        return [], f"no powercap interface at {root} (not Linux, intel_rapl driver not loaded, or a VM)"
    zones: list[RaplZone] = []
    for zone_dir in sorted(p for p in root.iterdir() if ZONE_NAME.match(p.name)):
        energy = zone_dir / "energy_uj"
        if not energy.exists():
            continue
        try:
            name = (zone_dir / "name").read_text().strip()
            max_range = int((zone_dir / "max_energy_range_uj").read_text().strip())
            int(energy.read_text().strip())
        except PermissionError:
            return [], (f"RAPL counters in {root} are not readable by this user (energy_uj is root-only "
                        "since Linux 5.10); run as root or grant read access to energy_uj")
        except (OSError, ValueError) as exc:
            return [], f"RAPL zone {zone_dir} is unreadable: {exc}"
        zones.append(RaplZone(name, energy, max_range))
    if not zones:
        return [], f"no RAPL zones (intel-rapl:<n>/energy_uj) under {root}"
    packages = [z for z in zones if z.name != "psys"]
    return (packages or zones), ""


def rapl_availability(root: Path = DEFAULT_ROOT) -> Availability:
    zones, reason = find_zones(root)
    return Availability(bool(zones), reason)


@contextmanager
def rapl_energy(root: Path = DEFAULT_ROOT, synchronize: Callable[[], None] = lambda: None,
                min_window_s: float = MIN_WINDOW_S) -> Iterator[MeterReading]:
    """Meter a region as the summed RAPL package-energy difference; unavailable with the reason."""
    reading = MeterReading("J")
    zones, reason = find_zones(root)
    if not zones:
        yield reading
        reading.result = Measurement.unavailable("J", reason)
        return
    before = [z.read_uj() for z in zones]
    start = time.perf_counter()
    yield reading
    synchronize()
    after = [z.read_uj() for z in zones]
    window = time.perf_counter() - start
    names = ", ".join(z.name for z in zones)
    details = {"window_s": window, "zones": names}
    if window < min_window_s:
        reading.result = Measurement.unavailable(
            "J", f"window {window:.4f} s is shorter than the RAPL update period; repeat the workload", **details)
        return
    joules = sum(energy_delta_uj(b, a, z.max_range_uj) for b, a, z in zip(before, after, zones, strict=True)) / 1e6
    reading.result = Measurement(
        joules, "J",
        f"RAPL energy_uj counters ({names}; CPU packages, not DRAM; whole machine, all processes) "
        f"differenced over a {window:.3f} s window, wrap-around via max_energy_range_uj",
        details,
    )
