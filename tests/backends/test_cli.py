"""The CLI's view of the backends: listed with availability, and an unavailable one exits 2 in one line."""

from __future__ import annotations

import json
import sys

import pytest


def test_plugins_lists_all_backends_with_reasons(tawq_cli):
    done = tawq_cli("plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["plugins"] if r["kind"] == "backend"}
    assert {"cpu", "cuda", "npu"} <= set(rows)
    assert rows["cpu"]["available"] is True
    for name in ("cuda", "npu"):
        assert rows[name]["available"] or rows[name]["reason"]


def test_bench_on_an_unavailable_npu_exits_2_without_traceback(tawq_cli, tmp_path):
    from tawq_backends.npu import NpuBackend

    if NpuBackend().is_available().available:
        pytest.skip("an Ascend NPU is usable here")
    done = tawq_cli("bench", "--backend", "npu", "--out", str(tmp_path), timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: backend 'npu' is unavailable: torch_npu")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "torch_npu" not in sys.modules  # availability never imports torch_npu in this process
