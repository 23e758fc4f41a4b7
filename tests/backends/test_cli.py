"""The CLI's view of the backends: listed with availability, and an unavailable one exits 2 in one line."""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import cli_in_process


def test_plugins_lists_all_backends_with_reasons():
    done = cli_in_process("plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["plugins"] if r["kind"] == "backend"}
    assert {"cpu", "cuda", "npu"} <= set(rows)
    assert rows["cpu"]["available"] is True
    for name in ("cuda", "npu"):
        assert rows[name]["available"] or rows[name]["reason"]


def test_bench_on_an_unavailable_npu_exits_2_without_traceback(tmp_path):
    from tawq_backends.npu import NpuBackend

    if NpuBackend().is_available().available:
        pytest.skip("an Ascend NPU is usable here")
    done = cli_in_process("bench", "--backend", "npu", "--out", tmp_path)
    line = done.one_line_error()  # exit 2, one line, no traceback
    assert line.startswith("error: backend 'npu' is unavailable: torch_npu"), line
    assert "torch_npu" not in sys.modules  # availability never imports torch_npu in this process
