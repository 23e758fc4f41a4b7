"""The npu backend: the torch_npu probe against stand-in torch_npu packages, and npu-smi power
against a stand-in `npu-smi` script, both built in temp dirs."""

from __future__ import annotations

import importlib.util
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tawq_backends import npu as npu_module
from tawq_backends.npu import NOT_INSTALLED, NpuBackend, NpuProbe, probe_torch_npu
from tawq_backends.npu_smi import (
    NpuSmiError,
    npu_smi_availability,
    npu_smi_energy,
    parse_power_w,
    smi_device_id,
)
from tawq_core import Availability, BackendUnavailable, create


@pytest.fixture(autouse=True)
def fresh_probe():
    probe_torch_npu.cache_clear()
    yield
    probe_torch_npu.cache_clear()


def stand_in_torch_npu(tmp_path: Path, monkeypatch, body: str) -> None:
    """Put a stand-in `torch_npu` package (whose import runs `body`) on this process's and children's path."""
    package = tmp_path / "stand_in_site" / "torch_npu"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    importlib.invalidate_caches()


def test_absent_torch_npu_is_reported_without_importing_anything(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    before = set(sys.modules)
    assert probe_torch_npu() == NpuProbe(False, 0, NOT_INSTALLED)
    assert "torch_npu" not in set(sys.modules) - before
    backend = create("backend", "npu")
    assert backend.is_available() == Availability(False, NOT_INSTALLED)
    with pytest.raises(BackendUnavailable, match=r"torch_npu not installed \(pip install 'tawq\[npu\]'"):
        backend.require()
    with backend.energy_meter() as reading:
        pass
    assert reading.result.method == f"unavailable: {NOT_INSTALLED}"
    assert backend.describe()["unavailable"] == NOT_INSTALLED


def test_missing_cann_library_becomes_a_one_line_reason(tmp_path, monkeypatch):
    stand_in_torch_npu(tmp_path, monkeypatch, """
        raise ImportError("libhccl.so: cannot open shared object file: No such file or directory")
    """)
    probe = probe_torch_npu()
    assert not probe.importable
    assert probe.reason.startswith("torch_npu found but Ascend CANN libraries are missing (libhccl.so)")
    assert "\n" not in probe.reason


def test_probe_disables_torch_backend_autoload(tmp_path, monkeypatch):
    stand_in_torch_npu(tmp_path, monkeypatch, """
        import os
        raise RuntimeError("autoload=" + os.environ.get("TORCH_DEVICE_BACKEND_AUTOLOAD", "unset"))
    """)
    assert probe_torch_npu().reason == "torch_npu found but cannot be imported: RuntimeError: autoload=0"


def test_hanging_import_times_out(tmp_path, monkeypatch):
    stand_in_torch_npu(tmp_path, monkeypatch, """
        import time
        time.sleep(60)
    """)
    probe = probe_torch_npu(timeout_s=1.0)
    assert not probe.importable and "did not finish within 1 s" in probe.reason


@pytest.mark.slow  # the probe's child process imports torch
def test_importable_stand_in_reports_its_devices(tmp_path, monkeypatch):
    stand_in_torch_npu(tmp_path, monkeypatch, """
        import types
        import torch
        torch.npu = types.SimpleNamespace(device_count=lambda: 2)
    """)
    assert probe_torch_npu() == NpuProbe(True, 2, "")


@pytest.mark.parametrize(("probe", "index", "expected"), [
    (NpuProbe(True, 0, ""), 0, "no Ascend NPU is visible"),
    (NpuProbe(True, 2, ""), 5, "index 5 does not exist (2 visible)"),
    (NpuProbe(True, 2, ""), 1, ""),
])
def test_device_count_and_index_checks(monkeypatch, probe, index, expected):
    monkeypatch.setattr(npu_module, "probe_torch_npu", lambda: probe)
    ok, reason = NpuBackend(index=index).is_available()
    assert ok == (expected == "")
    assert expected in reason


# -- npu-smi power ------------------------------------------------------------------------------

NPU_SMI_910B = """\
        NPU ID                         : {npu_id}
        Chip ID                        : 0
        Power Dissipation(W)           : 93.6
"""
NPU_SMI_OTHER = """\
        Power Limit(W)                 : 310
        Power Usage (W)                : 71.5
"""


@pytest.fixture
def fake_npu_smi(tmp_path) -> Path:
    """A stand-in `npu-smi` executable: prints a fixed 80.0 W reading and logs its arguments."""
    script = tmp_path / "fake_npu_smi" / "npu-smi"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "$@" >> "{tmp_path}/npu_smi_calls.log"
        echo "        NPU ID                         : 0"
        echo "        Power Dissipation(W)           : 80.0"
    """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_parse_power_formats():
    assert parse_power_w(NPU_SMI_910B.format(npu_id=0)) == 93.6
    assert parse_power_w(NPU_SMI_OTHER) == 71.5  # the limit line is skipped
    with pytest.raises(NpuSmiError, match="no power reading"):
        parse_power_w("Power Dissipation(W) : NA\n")


def test_smi_id_follows_visible_devices(monkeypatch):
    monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES", raising=False)
    assert smi_device_id(1) == 1
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,6")
    assert smi_device_id(0) == 4 and smi_device_id(1) == 6


def test_npu_smi_energy_integrates_the_stand_in_power(fake_npu_smi, tmp_path):
    with npu_smi_energy(str(fake_npu_smi), 3, lambda: None, chip=1, interval_s=0.02, min_window_s=0.0) as r:
        time.sleep(0.15)
    result = r.result
    assert result.available
    assert result.value == pytest.approx(80.0 * result.details["window_s"])
    assert result.details["samples"] >= 3
    assert "npu-smi info -t power -i 3 -c 1" in result.method and "trapezoid" in result.method
    calls = (tmp_path / "npu_smi_calls.log").read_text().splitlines()
    assert set(calls) == {"info -t power -i 3 -c 1"}


def test_npu_smi_absent_or_failing_is_a_reason(tmp_path):
    ok, reason = npu_smi_availability(None, 0)
    assert not ok and "npu-smi not found" in reason
    failing = tmp_path / "npu-smi"
    failing.write_text("#!/bin/sh\necho 'Error: device 9 not found' >&2\nexit 3\n")
    failing.chmod(0o755)
    ok, reason = npu_smi_availability(str(failing), 9)
    assert not ok and "exited 3" in reason and "device 9 not found" in reason


def test_npu_backend_meters_energy_with_stand_ins(monkeypatch, fake_npu_smi, stand_in_device_api):
    """The backend's own energy_meter: torch_npu and the device replaced by stand-ins, npu-smi by a script."""
    monkeypatch.setattr(npu_module, "probe_torch_npu", lambda: NpuProbe(True, 1, ""))
    monkeypatch.setattr(NpuBackend, "_api", lambda self: stand_in_device_api)
    monkeypatch.setattr(npu_module, "MIN_WINDOW_S", 0.0)
    monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES", raising=False)
    backend = NpuBackend(npu_smi=str(fake_npu_smi))
    assert backend.energy_availability() == Availability(True, "")
    with backend.energy_meter() as reading:
        time.sleep(0.1)
    assert reading.result.value == pytest.approx(80.0 * reading.result.details["window_s"])
    assert "synchronize(0)" in stand_in_device_api.calls
