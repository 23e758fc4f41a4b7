"""Matrix rendering from a known list of cell records: statistics, conventions, missing figures."""

from __future__ import annotations

import csv
import io

import pytest

from tawq_core.bench.aggregate import aggregate
from tawq_core.bench.render import csv_text, markdown, markdown_table


def _record(quantizer, seed, top1, backend="cpu", status="ok", **extra):
    record = {
        "quantizer": quantizer, "seed": seed, "backend": backend, "status": status, "top1": top1,
        "mode": "none" if quantizer == "fp32" else "qat", "train": {"time_s": 10.0 + seed, "init": None},
        "storage": {"weight_bytes": 4096 if quantizer == "fp32" else 1024, "bits_per_weight": 32.0 if
                    quantizer == "fp32" else 3.2, "compression": 1.0 if quantizer == "fp32" else 4.0,
                    "params_quantized": 0 if quantizer == "fp32" else 900},
        "ops": {"firing_rate": 0.1},
        "energy": {"conventional": {"value": 2e-6, "unit": "J/sample", "method": "conv"},
                   "exact": {"value": 1e-6, "unit": "J/sample", "method": "exact"},
                   "measured": {"value": None, "unit": "J", "method": "unavailable: no RAPL here"}},
    }
    if status == "ok":
        record["latency"] = {"batch_size": 64, "batch_median_s": 0.002, "batch_p90_s": 0.003,
                             "sample_median_s": 0.002 / 64, "sample_p90_s": 0.003 / 64,
                             "throughput_sps": 32000.0, "method": "perf"}
        record["latency_b1"] = {"batch_size": 1, "batch_median_s": 0.0005, "batch_p90_s": 0.0006}
        record["memory"] = {"value": 2**20, "unit": "B", "method": "rss"}
        record["deployed"] = {"form": "torch dense" if quantizer == "fp32" else "deployed",
                              "resident_bytes": 4096 if quantizer == "fp32" else 2048}
    else:
        record["reason"] = "no GPU"
    record.update(extra)
    return record


RECORDS = [
    _record("fp32", 0, 90.0), _record("fp32", 1, 92.0),
    _record("tawq", 0, 89.0), _record("tawq", 1, 91.5),
    _record("fp32", 0, 90.0, backend="cuda", status="unavailable"),
    _record("fp32", 1, 92.0, backend="cuda", status="unavailable"),
]


def test_mean_std_and_per_seed_drop():
    rows = aggregate(RECORDS, ["fp32", "tawq"], ["cpu", "cuda"])
    assert [(r["quantizer"], r["backend"]) for r in rows] == [("fp32", "cpu"), ("fp32", "cuda"), ("tawq", "cpu")]
    fp32, _, tawq = rows
    assert fp32["top1_mean"] == pytest.approx(91.0) and fp32["top1_std"] == pytest.approx(2 ** 0.5)
    # drops -1.0 and -0.5: mean -0.75, sample std 0.3536
    assert tawq["drop_mean"] == pytest.approx(-0.75) and tawq["drop_std"] == pytest.approx(0.5 / 2 ** 0.5)
    assert tawq["train_time_s_mean"] == pytest.approx(10.5)


def test_single_seed_has_no_std():
    rows = aggregate(RECORDS[:1], ["fp32"], ["cpu"])
    assert rows[0]["top1_std"] is None and "±" not in markdown_table(rows)


def test_unavailable_backend_keeps_accuracy_and_explains_missing_figures():
    rows = aggregate(RECORDS, ["fp32", "tawq"], ["cpu", "cuda"])
    cuda = rows[1]
    assert cuda["status"] == "unavailable" and cuda["top1_mean"] == pytest.approx(91.0)
    assert cuda["latency_batch_median_s_mean"] is None
    assert cuda["reasons"]["latency_batch_median_s"] == "backend unavailable: no GPU"
    # estimates do not depend on the backend
    assert cuda["energy_exact_j_mean"] == pytest.approx(1e-6)


def test_markdown_columns_and_notes():
    rows = aggregate(RECORDS, ["fp32", "tawq"], ["cpu", "cuda"])
    results = {"config": {"name": "t", "model": "mlp", "dataset": "digits", "timesteps": 4, "seeds": [0, 1]},
               "run_id": "t-abc", "config_hash": "f" * 64, "notes": ["a stated convention"],
               "provenance": {"tawq": "0.1", "torch": "2", "git_sha": "abc", "machine": {"cpu": "x"}}}
    text = markdown(results, rows)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| quantizer"))
    for column in ("top-1 %", "Δ vs fp32 (pp)", "energy est. conventional µJ/sample",
                   "energy est. exact ternary-aware µJ/sample", "energy measured µJ/sample", "bits/weight"):
        assert column in header
    tawq = next(line for line in lines if line.startswith("| tawq"))
    cells = [c.strip() for c in tawq.strip("|").split("|")]
    assert cells[2] == "90.25 ± 1.77" and cells[3] == "-0.75 ± 0.35"
    assert cells[4] == "0.50 / 0.60" and cells[5] == "2.00 / 3.00" and cells[6] == "31.2 / 46.9"
    assert cells[7] == "32000 ± 0" and cells[8] == "2" and cells[9] == "1" and cells[10] == "n/a†"
    cuda = [c.strip() for c in next(line for line in lines if "| cuda |" in line).strip("|").split("|")]
    assert cuda[2] == "91.00 ± 1.41" and cuda[4] == cuda[5] == cuda[6] == cuda[11] == cuda[13] == "n/a†"
    assert cells[12] == "1" and cells[13] == "2" and cells[14] == "3.20" and cells[15] == "4.00×"
    assert dict(zip([h.strip() for h in header.strip("|").split("|")], cells, strict=True))["params quantized"] == "900"
    assert next(line for line in lines if line.startswith("| fp32")).startswith("| fp32 (torch dense) |")
    assert "- a stated convention" in lines
    assert any("energy measured n/a for fp32 (torch dense)/cpu, tawq/cpu: no RAPL here" in line for line in lines)
    assert any("backend unavailable: no GPU" in line for line in lines)


def test_csv_has_raw_numbers_and_reasons():
    rows = aggregate(RECORDS, ["fp32", "tawq"], ["cpu", "cuda"])
    table = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert len(table) == 3
    assert float(table[2]["top1_mean"]) == pytest.approx(90.25)
    assert table[2]["seeds"] == "0 1"
    assert table[0]["energy_measured_j_mean"] == "" and table[0]["energy_measured_j_reason"] == "no RAPL here"
    assert float(table[0]["latency_batch_median_s_mean"]) == pytest.approx(0.002)
