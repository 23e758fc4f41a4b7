"""Ascend NPU power from ``npu-smi info -t power -i <id> [-c <chip>]``, integrated into energy.

Ascend exposes board power, not an energy counter, so the meter runs ``npu-smi`` repeatedly in a
background thread (target 10 Hz; one call can take tens of milliseconds, the achieved rate is
reported) and integrates the trace with the trapezoid rule over the region's window (see `_power`).
The output format differs between npu-smi versions (``Power Dissipation(W)``, ``Power Usage (W)``,
``Power(W)``), so the first ``power`` line that is not a limit is read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager

from tawq_backends._power import sampled_energy
from tawq_core import Availability, MeterReading

SAMPLE_INTERVAL_S = 0.1  # >= 10 Hz
MIN_WINDOW_S = 0.5  # at least ~5 samples inside the region
CALL_TIMEOUT_S = 5.0
_POWER_LINE = re.compile(r"^\s*(?P<label>[^:\n]*power[^:\n]*?)\s*:\s*(?P<value>\d+(?:\.\d+)?)\s*(?:W)?\s*$",
                         re.IGNORECASE | re.MULTILINE)


class NpuSmiError(RuntimeError):
    """npu-smi failed or printed no power reading."""


def find_npu_smi(explicit: str | None = None) -> str | None:
    """The npu-smi executable: `explicit`, else the one on PATH (Ascend drivers install it there)."""
    return explicit if explicit is not None else shutil.which("npu-smi")


def smi_device_id(index: int) -> int:
    """The physical NPU id npu-smi uses for torch's device `index` (ASCEND_RT_VISIBLE_DEVICES remaps)."""
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES", "").strip()
    ids = [int(part) for part in visible.split(",") if part.strip().isdigit()] if visible else []
    return ids[index] if index < len(ids) else index


def parse_power_w(text: str) -> float:
    for match in _POWER_LINE.finditer(text):
        if not re.search(r"limit|cap|rated", match["label"], re.IGNORECASE):
            return float(match["value"])
    raise NpuSmiError(f"no power reading in npu-smi output: {text.strip()[:200]!r}")


def npu_smi_command(executable: str, npu_id: int, chip: int | None) -> list[str]:
    command = [executable, "info", "-t", "power", "-i", str(npu_id)]
    return command + ["-c", str(chip)] if chip is not None else command


def read_power_w(executable: str, npu_id: int, chip: int | None = None, timeout_s: float = CALL_TIMEOUT_S) -> float:
    command = npu_smi_command(executable, npu_id, chip)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NpuSmiError(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0:
        raise NpuSmiError(f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return parse_power_w(done.stdout)


def npu_smi_availability(executable: str | None, npu_id: int, chip: int | None = None) -> Availability:
    if executable is None:
        return Availability(False, "npu-smi not found on PATH (it comes with the Ascend driver package)")
    try:
        read_power_w(executable, npu_id, chip)
    except NpuSmiError as exc:
        return Availability(False, f"npu-smi gives no power reading: {exc}")
    return Availability(True, "")


def npu_smi_energy(
    executable: str,
    npu_id: int,
    synchronize: Callable[[], None],
    *,
    chip: int | None = None,
    interval_s: float = SAMPLE_INTERVAL_S,
    min_window_s: float = MIN_WINDOW_S,
) -> AbstractContextManager[MeterReading]:
    """Meter a region by sampling npu-smi power in the background and integrating it."""
    command = " ".join(npu_smi_command(os.path.basename(executable), npu_id, chip))
    return sampled_energy(lambda: read_power_w(executable, npu_id, chip), synchronize,
                          interval_s=interval_s, source=f"board power from `{command}`",
                          min_window_s=min_window_s)

