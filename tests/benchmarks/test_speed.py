"""benchmarks/speed.py runs end to end in --quick mode and writes valid, complete JSON (no timing checks)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark script end to end, in its own interpreter

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_writes_every_part(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--nets", "mlp-64-256-256-10",
                           "--parts", "frameworks", "qat", "packed", "--json", str(out)],  # deploy: test_speed_deploy
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| mlp-64-256-256-10 | default | train |" in proc.stdout
    result = json.loads(out.read_text())

    assert result["machine"]["threads"] == 1 and result["machine"]["torch_threads"] == 1
    assert result["machine"]["versions"]["torch"]
    assert len(result["load_average_before"]) == 3 and result["settings"]["repeats"] == 3

    part = result["frameworks"]
    (row,) = part["rows"]
    frameworks = ["tawq"] + [fw for fw in ("spikingjelly", "snntorch") if fw not in part["unavailable"]]
    assert sorted(row["ms"]) == sorted(frameworks)
    for fw in frameworks:
        for mode in ("train", "infer"):
            stats = row["ms"][fw][mode]
            assert stats["n"] == 3 and stats["p25"] <= stats["median"] <= stats["p75"]
    for other in frameworks[1:]:
        assert all(_positive(v) for v in row["speedup"][other].values())
    if "spikingjelly" in frameworks:
        assert row["outputs_equal_spikingjelly"] is True  # same weights, same equations: same spikes
    if "snntorch" in frameworks:
        assert row["output_agreement_snntorch"] > 0.99  # the same network up to rounding
    assert 0.02 < row["spike_rate"]["tawq"] < 0.5  # the output layer fires: the comparison is not vacuous

    assert {r["model"] for r in result["qat"]} == {"sew-resnet", "spikingformer"} and len(result["qat"]) == 3
    for r in result["qat"]:
        assert _positive(r["tawq_over_fp32"]) and r["quantized_layers"] > 0

    for r in result["packed"]:
        variants = r["variants"]
        assert set(variants) == {"fp32", "fp32 spike-driven", "tawq", "tawq fake-quant", "ptq8", "ptq8 fake-quant"}
        assert variants["tawq"]["bit_exact_reload"] is True and variants["tawq"]["bits_per_weight"] < 4
        assert all(_positive(v["resident_weight_bytes"]) for v in variants.values())
        # the deployed form keeps packed weights only; the fake-quant form float effective weights and latents
        assert variants["tawq"]["resident_weight_bytes"] < variants["fp32"]["resident_weight_bytes"]
        assert variants["tawq fake-quant"]["resident_weight_bytes"] > variants["fp32"]["resident_weight_bytes"]
        assert all(len(v["latency_ms"]) == 2 for v in variants.values())
