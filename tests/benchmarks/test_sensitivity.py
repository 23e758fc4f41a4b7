"""benchmarks/sensitivity.py: one run per quantized layer plus "all layers", drops vs fp32 in the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark script end to end, in its own interpreter

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sensitivity.py"
PRESET = """
dataset = "digits"
model = "mlp"
timesteps = 2
quantizers = ["tawq"]
threads = 1
[model_options]
hidden = [16, 16, 16]
[train]
epochs = 1
batch_size = 64
[qat]
epochs = 2
"""


def test_each_quantized_layer_gets_its_own_row(tmp_path):
    preset = tmp_path / "tiny.toml"
    preset.write_text(PRESET)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--preset", str(preset), "--heldout", "test",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "sensitivity.json").read_text())
    assert [r["layer"] for r in record["rows"]] == ["body.2.0", "body.4.0", "all layers"]
    assert [r["params"] for r in record["rows"]] == [256, 256, 512]
    assert "| body.2.0 | 256 |" in proc.stdout and "1 fine-tuning epoch(s) each" in proc.stdout
