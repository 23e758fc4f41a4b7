"""`npu`: Huawei Ascend NPUs through torch_npu; NPU-event timing, allocator peak memory, npu-smi energy, hccl.

Nothing is imported at module load: `importlib.util.find_spec` says whether torch_npu is installed at
all, and a subprocess probe (with ``TORCH_DEVICE_BACKEND_AUTOLOAD=0``, so the probe's own ``import
torch`` cannot be broken by torch auto-loading torch_npu) says whether it can actually be imported.
Without Ascend CANN, ``import torch_npu`` fails with ``libhccl.so: cannot open shared object file``,
and torch with torch_npu installed fails at ``import torch`` unless auto-loading is disabled; both
become one-line reasons. torch_npu is imported in this process only when the backend is used.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch

from tawq_backends._accelerator import AcceleratorBackend, EventTimer, unavailable_meter
from tawq_backends.npu_smi import MIN_WINDOW_S, find_npu_smi, npu_smi_availability, npu_smi_energy, smi_device_id
from tawq_core import Availability, MeterReading, hookimpl

NOT_INSTALLED = "torch_npu not installed (pip install 'tawq[npu]'; needs Ascend CANN)"
CANN_HINT = "install Ascend CANN and `source /usr/local/Ascend/ascend-toolkit/set_env.sh`"
PROBE_TIMEOUT_S = 120.0
_PROBE = "import torch_npu, torch; print('TAWQ_NPU_DEVICES', torch.npu.device_count())"
_MISSING_LIB = re.compile(r"(lib[\w.+-]*?\.so[\w.]*): cannot open shared object file")
DRIVER_VERSION_FILE = Path("/usr/local/Ascend/driver/version.info")


class NpuProbe(NamedTuple):
    """Outcome of trying ``import torch_npu`` in a child process."""

    importable: bool
    devices: int
    reason: str


def _explain_failure(stderr: str) -> str:
    missing = _MISSING_LIB.search(stderr)
    if missing:
        return f"torch_npu found but Ascend CANN libraries are missing ({missing[1]}); {CANN_HINT}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "no error output"
    return f"torch_npu found but cannot be imported: {last[:300]}"


@functools.lru_cache(maxsize=8)
def probe_torch_npu(timeout_s: float = PROBE_TIMEOUT_S) -> NpuProbe:
    """Whether torch_npu is installed and importable here, and how many NPUs it sees (cached per process:
    the probe starts a Python interpreter that imports torch)."""
    if importlib.util.find_spec("torch_npu") is None:
        return NpuProbe(False, 0, NOT_INSTALLED)
    env = {**os.environ, "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return NpuProbe(False, 0, f"torch_npu found but `import torch_npu` did not finish within {timeout_s:g} s "
                                  "(hung driver or CANN initialisation)")
    if done.returncode != 0:
        return NpuProbe(False, 0, _explain_failure(done.stderr))
    match = re.search(r"TAWQ_NPU_DEVICES (\d+)", done.stdout)
    if match is None:
        return NpuProbe(False, 0, f"torch_npu probe printed no device count: {done.stdout.strip()[:200]!r}")
    return NpuProbe(True, int(match[1]), "")


class NpuEventTimer(EventTimer):
    method = "torch.npu.Event(enable_timing=True) pair on the current stream; elapsed_time after the end event"


class NpuBackend(AcceleratorBackend):
    """One Ascend device. `npu_smi` overrides the npu-smi executable, `smi_chip` adds ``-c <chip>`` for
    cards with several chips; the npu-smi device id follows ASCEND_RT_VISIBLE_DEVICES."""

    name = "npu"
    dist_backend = "hccl"
    device_type = "npu"
    api_name = "torch.npu"
    timer_class = NpuEventTimer
    energy_min_window_s = 2.0  # >= 20 power samples at 10 Hz

    def __init__(self, index: int = 0, npu_smi: str | None = None, smi_chip: int | None = None):
        super().__init__(index)
        self.npu_smi = npu_smi
        self.smi_chip = smi_chip

    def is_available(self) -> Availability:
        probe = probe_torch_npu()
        if not probe.importable:
            return Availability(False, probe.reason)
        if probe.devices == 0:
            return Availability(False, "torch_npu imports but no Ascend NPU is visible (check `npu-smi info` "
                                       "and ASCEND_RT_VISIBLE_DEVICES)")
        if not 0 <= self.index < probe.devices:
            return Availability(False, f"NPU device index {self.index} does not exist ({probe.devices} visible)")
        return Availability(True, "")

    def _api(self) -> ModuleType:
        importlib.import_module("torch_npu")  # registers the torch.npu module and the "npu" device type
        return torch.npu  # type: ignore[attr-defined]

    def _smi(self) -> tuple[str | None, int]:
        return find_npu_smi(self.npu_smi), smi_device_id(self.index)

    def energy_availability(self) -> Availability:
        ok, reason = self.is_available()
        if not ok:
            return Availability(False, reason)
        executable, npu_id = self._smi()
        return npu_smi_availability(executable, npu_id, self.smi_chip)

    def energy_meter(self) -> AbstractContextManager[MeterReading]:
        ok, reason = self.energy_availability()
        executable, npu_id = self._smi()
        if not ok or executable is None:
            return unavailable_meter("J", reason)
        return npu_smi_energy(executable, npu_id, self.synchronize, chip=self.smi_chip, min_window_s=MIN_WINDOW_S)

    def describe(self) -> dict[str, str]:
        facts = {"backend": self.name, "torch": torch.__version__}
        ok, reason = self.is_available()
        if not ok:
            return {**facts, "unavailable": reason}
        api = self._api()
        torch_npu = importlib.import_module("torch_npu")
        facts.update(device=str(api.get_device_name(self.index)), index=str(self.index),
                     torch_npu=str(getattr(torch_npu, "__version__", "unknown")))
        if DRIVER_VERSION_FILE.is_file():
            for line in DRIVER_VERSION_FILE.read_text().splitlines():
                if line.startswith("Version="):
                    facts["driver"] = line.split("=", 1)[1].strip()
        return facts


@hookimpl
def tawq_register_backends(register):
    register("npu", NpuBackend)
