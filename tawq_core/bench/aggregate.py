"""Per-seed cell records -> one matrix row per (quantizer, backend): mean ± std over seeds.

Std is the sample standard deviation (n - 1) over seeds and is absent with a single seed. The drop
vs fp32 is computed per seed (quantized minus fp32 accuracy of the same seed) before averaging, so
seed-to-seed variation that both share cancels.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from tawq_core.plugin_api.quantizer import QuantMode


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    std = statistics.stdev(present) if len(present) > 1 else None
    return statistics.fmean(present), std


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _measured(record: dict[str, Any], path: str) -> float | None:
    """The value of a `Measurement` dict (None when unavailable)."""
    m = _get(record, path)
    return m.get("value") if isinstance(m, dict) else None


def _reason(records: list[dict[str, Any]], path: str) -> str | None:
    """Why a measurement is missing in every seed (the first reason), or None if any seed has it."""
    reasons = []
    for r in records:
        if r.get("status") == "failed":  # the reason names the plugin that failed
            reasons.append(r.get("reason", "?"))
            continue
        if r.get("status") != "ok":
            reasons.append(f"backend unavailable: {r.get('reason', '?')}")
            continue
        m = _get(r, path)
        if isinstance(m, dict) and m.get("value") is not None:
            return None
        reasons.append((m or {}).get("method", "not measured").removeprefix("unavailable: "))
    return reasons[0] if reasons else "not measured"


#: row field -> (record path, whether the record value is a Measurement dict)
SEED_STATS: dict[str, tuple[str, bool]] = {
    "top1": ("top1", False),
    "latency_batch_median_s": ("latency.batch_median_s", False),
    "latency_batch_p90_s": ("latency.batch_p90_s", False),
    "latency_sample_median_s": ("latency.sample_median_s", False),
    "latency_sample_p90_s": ("latency.sample_p90_s", False),
    "throughput_sps": ("latency.throughput_sps", False),
    "latency_b1_median_s": ("latency_b1.batch_median_s", False),
    "latency_b1_p90_s": ("latency_b1.batch_p90_s", False),
    "resident_bytes": ("deployed.resident_bytes", False),
    "energy_conventional_j": ("energy.conventional", True),
    "energy_exact_j": ("energy.exact", True),
    "energy_measured_j": ("energy.measured", True),
    "peak_memory_increase_b": ("memory", True),
    "firing_rate": ("ops.firing_rate", False),
    "weight_bytes": ("storage.weight_bytes", False),
    "bits_per_weight": ("storage.bits_per_weight", False),
    "compression": ("storage.compression", False),
    "params_quantized": ("storage.params_quantized", False),
    "nb_footprint_b": ("neurobench.Footprint", False),
    "nb_effective_acs": ("neurobench.SynapticOperations.Effective_ACs", False),
    "nb_effective_macs": ("neurobench.SynapticOperations.Effective_MACs", False),
    "train_time_s": ("train.time_s", False),
}
#: fields whose absence is explained with a reason in the matrix
EXPLAINED = {
    "energy_measured_j": "energy.measured",
    "energy_conventional_j": "energy.conventional",
    "energy_exact_j": "energy.exact",
    "peak_memory_increase_b": "memory",
    "latency_batch_median_s": "latency.batch_median_s",
    "latency_b1_median_s": "latency_b1.batch_median_s",
    "resident_bytes": "deployed.resident_bytes",
}


def _fp32_top1(records: list[dict[str, Any]]) -> dict[int, float]:
    """The reference row's (mode none: fp32) top-1 per seed."""
    return {r["seed"]: r["top1"] for r in records
            if r.get("mode") == QuantMode.NONE.value and r.get("top1") is not None}


def _as_variant(record: dict[str, Any], form: str) -> dict[str, Any]:
    """A cell record seen through one of its other forms (the fp32 row's spike-driven form): that form's
    measurements over the record's shared ones (accuracy, storage, the energy estimates)."""
    variant = record.get("variants", {}).get(form)
    if variant is None:
        return {**record, "status": "unavailable", "reason": record.get("reason", f"{form} form not measured"),
                "variants": {}}
    return {**record, **variant, "energy": {**record.get("energy", {}), **variant.get("energy", {})}, "variants": {}}


def aggregate(records: list[dict[str, Any]], quantizers: list[str], backends: list[str]) -> list[dict[str, Any]]:
    """Rows in the order quantizers × backends were asked for, each followed by its other forms' rows (the
    fp32 row's spike-driven form); missing combinations are skipped."""
    reference = _fp32_top1(records)
    rows = []
    for q in quantizers:
        for b in backends:
            group = sorted((r for r in records if r["quantizer"] == q and r["backend"] == b), key=lambda r: r["seed"])
            if group:
                rows.append(_row(q, b, group, reference))
                for form in dict.fromkeys(f for r in group for f in r.get("variants", {})):
                    rows.append(_row(q, b, [_as_variant(r, form) for r in group], reference))
    return rows


def _status(group: list[dict[str, Any]]) -> str:
    """ok if any seed was measured; failed if plugin code failed in every seed; else unavailable."""
    if any(r.get("status") == "ok" for r in group):
        return "ok"
    return "failed" if all(r.get("status") == "failed" for r in group) else "unavailable"


def _row(quantizer: str, backend: str, group: list[dict[str, Any]], reference: dict[int, float]) -> dict[str, Any]:
    first = group[0]
    row: dict[str, Any] = {
        "quantizer": quantizer,
        "backend": backend,
        "mode": first.get("mode"),
        "init": first.get("train", {}).get("init"),
        "seeds": [r["seed"] for r in group],
        "status": _status(group),
        "batch_size": _get(first, "latency.batch_size"),
        "form": _get(first, "deployed.form"),
        "reasons": {},
    }
    for name, (path, is_measurement) in SEED_STATS.items():
        values = [(_measured(r, path) if is_measurement else _get(r, path)) for r in group]
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
    drops = [r["top1"] - reference[r["seed"]] for r in group if r.get("top1") is not None and r["seed"] in reference]
    row["drop_mean"], row["drop_std"] = mean_std(drops)
    for name, path in EXPLAINED.items():
        if row[f"{name}_mean"] is None:
            row["reasons"][name] = _reason(group, path)
    return row
