"""Matrix rows -> Markdown (for papers and the terminal) and CSV (for spreadsheets and scripts).

The Markdown keeps one column per convention (estimated conventional, estimated exact, measured
energy are never merged) and ends with notes that state every convention and every missing figure's
reason, so a pasted table is self-explanatory. The CSV carries raw numbers: means and stds in
separate columns, SI units (seconds, joules, bytes), and the reason where a figure is missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from tawq_core.bench.aggregate import SEED_STATS
from tawq_core.pipeline.deployed import DEPLOYED
from tawq_core.plugin_api.quantizer import QuantMode

Row = dict[str, Any]


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def _pm(row: Row, name: str, scale: float = 1.0, digits: int = 2, signed: bool = False) -> str:
    mean, std = row.get(f"{name}_mean"), row.get(f"{name}_std")
    if mean is None:
        return "n/a†" if name in row.get("reasons", {}) else "n/a"
    text = f"{mean * scale:+.{digits}f}" if signed else f"{mean * scale:.{digits}f}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def _sig(row: Row, name: str, scale: float = 1.0) -> str:
    """Energies and bytes span orders of magnitude: 4 significant digits."""
    mean = row.get(f"{name}_mean")
    if mean is None:
        return "n/a†" if name in row.get("reasons", {}) else "n/a"
    std = row.get(f"{name}_std")
    text = f"{mean * scale:.4g}"
    return text if not std else f"{text} ± {std * scale:.2g}"


def _latency(row: Row, per: str, scale: float, digits: int) -> str:
    median = row.get(f"latency_{per}_median_s_mean")
    if median is None:
        return "n/a†" if "latency_batch_median_s" in row.get("reasons", {}) else "n/a"
    return f"{_num(median, scale, digits)} / {_num(row[f'latency_{per}_p90_s_mean'], scale, digits)}"


def _fmt(row: Row, name: str, template: str) -> str:
    mean = row.get(f"{name}_mean")
    return "n/a" if mean is None else template.format(mean)


def _quantizer_label(row: Row) -> str:
    """``fp32 (torch dense)`` / ``fp32 (spike-driven)`` for the two fp32 forms, ``tawq (qat, init fp32)`` for a
    deployed quantized row; any other form (the eval fallback of a backend without kernels) is named."""
    mode, form = row.get("mode") or "?", row.get("form")
    if mode == QuantMode.NONE.value and form:
        return f"{row['quantizer']} ({form})"
    if mode == "qat" and row.get("init"):
        mode = f"qat, init {row['init']}"
    return f"{row['quantizer']} ({mode}{'' if form in (None, DEPLOYED) else f', {form}'})"


MARKDOWN_COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("quantizer", _quantizer_label),
    ("backend", lambda r: r["backend"]),
    ("top-1 %", lambda r: _pm(r, "top1")),
    ("Δ vs fp32 (pp)", lambda r: "ref" if r.get("mode") == QuantMode.NONE.value else _pm(r, "drop", signed=True)),
    ("latency batch 1 ms (median / p90)", lambda r: _latency(r, "b1", 1e3, 2)),
    ("latency batch N ms (median / p90)", lambda r: _latency(r, "batch", 1e3, 2)),
    ("latency/sample µs (median / p90)", lambda r: _latency(r, "sample", 1e6, 1)),
    ("throughput samples/s", lambda r: _pm(r, "throughput_sps", 1.0, 0)),
    ("energy est. conventional µJ/sample", lambda r: _sig(r, "energy_conventional_j", 1e6)),
    ("energy est. exact ternary-aware µJ/sample", lambda r: _sig(r, "energy_exact_j", 1e6)),
    ("energy measured µJ/sample", lambda r: _sig(r, "energy_measured_j", 1e6)),
    ("peak memory increase MiB", lambda r: _sig(r, "peak_memory_increase_b", 1 / 2**20)),
    ("weights KiB", lambda r: _sig(r, "weight_bytes", 1 / 1024)),
    ("resident weights KiB", lambda r: _sig(r, "resident_bytes", 1 / 1024)),
    ("bits/weight (quantized layers)", lambda r: _fmt(r, "bits_per_weight", "{:.2f}")),
    ("compression vs fp32", lambda r: _fmt(r, "compression", "{:.2f}×")),
    ("NeuroBench Footprint KiB", lambda r: _sig(r, "nb_footprint_b", 1 / 1024)),
    ("NeuroBench Effective ACs / MACs per sample",
     lambda r: f"{_sig(r, 'nb_effective_acs')} / {_sig(r, 'nb_effective_macs')}"),
    ("mean firing rate", lambda r: _pm(r, "firing_rate", 1.0, 3)),
    ("params quantized", lambda r: _fmt(r, "params_quantized", "{:,.0f}")),
    ("train time s", lambda r: _pm(r, "train_time_s", 1.0, 1)),
]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def markdown_table(rows: list[Row]) -> str:
    header = [h for h, _ in MARKDOWN_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_escape(fn(row)) for _, fn in MARKDOWN_COLUMNS) + " |")
    return "\n".join(lines)


def _reason_notes(rows: list[Row]) -> list[str]:
    seen: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for field, reason in row.get("reasons", {}).items():
            form = "" if row.get("form") in (None, DEPLOYED) else f" ({row['form']})"
            seen.setdefault((field, reason), []).append(f"{row['quantizer']}{form}/{row['backend']}")
    return [f"† {field.removesuffix('_j').removesuffix('_b').replace('_', ' ')} n/a for {', '.join(where)}: {reason}"
            for (field, reason), where in seen.items()]


def _short_sha(sha: str) -> str:
    return sha if sha.startswith("n/a") else sha[:12] + ("+dirty" if sha.endswith("+dirty") else "")


def _provenance_note(records: list[dict[str, Any]], fallback: dict[str, Any]) -> str:
    """Versions, commit and machine of the cells themselves (a resumed run may mix several)."""
    provs = [r["provenance"] for r in records if isinstance(r.get("provenance"), dict)] or [fallback]

    def one(label: str, get: Callable[[dict[str, Any]], str]) -> str:
        values = list(dict.fromkeys(get(p) for p in provs))
        return f"{label} {values[0]}" if len(values) == 1 else f"{label} mixed ({', '.join(values)})"

    return "; ".join([
        one("tawq", lambda p: str(p.get("tawq", "?"))), one("torch", lambda p: str(p.get("torch", "?"))),
        one("git", lambda p: _short_sha(str(p.get("git_sha", "n/a")))),
        one("machine:", lambda p: f"{p.get('machine', {}).get('cpu', '?')}, "
                                  f"{p.get('machine', {}).get('torch_threads', '?')} torch threads"),
    ])


def markdown(results: dict[str, Any], rows: list[Row]) -> str:
    """The whole ``matrix.md``: title, table, then notes stating conventions and provenance."""
    cfg, prov = results["config"], results.get("provenance", {})
    title = (f"## tawq bench: {cfg['name']} — {cfg['model']} on {cfg['dataset']}, T = {cfg['timesteps']}, "
             f"seeds {', '.join(map(str, cfg['seeds']))}")
    notes = [f"- {line}" for line in results.get("notes", [])]
    notes += [f"- {line}" for line in _reason_notes(rows)]
    notes.append(f"- run `{results['run_id']}`, config sha256 `{results['config_hash'][:16]}`; "
                 f"{_provenance_note(results.get('records', []), prov)}")
    return "\n".join([title, "", markdown_table(rows), "", *notes]) + "\n"


CSV_FIELDS = ["quantizer", "form", "backend", "mode", "init", "seeds", "status", "batch_size"]


def csv_text(rows: list[Row]) -> str:
    """Raw numbers; a missing figure is empty with its reason in a ``<field>_reason`` column."""
    stats = [*SEED_STATS, "drop"]
    fields = [*CSV_FIELDS]
    for name in stats:
        fields += [f"{name}_mean", f"{name}_std"]
    reason_fields = sorted({f for row in rows for f in row.get("reasons", {})})
    fields += [f"{f}_reason" for f in reason_fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = {k: row.get(k) for k in fields if not k.endswith("_reason")}
        out["seeds"] = " ".join(map(str, row["seeds"]))
        for f in reason_fields:
            out[f"{f}_reason"] = row.get("reasons", {}).get(f, "")
        writer.writerow({k: ("" if v is None else v) for k, v in out.items()})
    return buffer.getvalue()
