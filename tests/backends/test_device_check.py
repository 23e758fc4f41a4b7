"""benchmarks/device_check.py runs here too: cpu measured, cuda reported with its reason."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_check_writes_a_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    status = load_script().main(["--no-tests", "--json", str(out), "--backends", "cpu,cuda,npu", "--batch", "2",
                                 "--size", "8", "--channels", "4", "--repeats", "2", "--energy-seconds", "0.1"])
    assert status == 0
    report = json.loads(out.read_text())
    cpu = report["backends"]["cpu"]
    assert cpu["available"] and [row["model"] for row in cpu["rows"]] == ["fp32", "tawq"]
    for row in cpu["rows"]:
        assert row["latency"]["median_s"] > 0 and len(row["latency"]["samples_s"]) == 2
        assert row["memory"]["method"]
        assert row["energy_estimate_per_sample"]["conventional"]["value"] > 0
        measured = row["energy_measured_per_batch"]
        assert measured["value"] is not None or measured["method"].startswith("unavailable: ")
    cuda = report["backends"]["cuda"]
    assert cuda["available"] == torch.cuda.is_available()
    if not cuda["available"]:
        assert cuda["reason"] and cuda["rows"] == []
    assert not report["backends"]["npu"]["available"] or report["backends"]["npu"]["rows"]
    printed = capsys.readouterr().out
    assert "backend" in printed and "cpu" in printed and "wrote" in printed
