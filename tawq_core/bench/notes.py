"""The sentences under the matrix: every convention and recipe a reader needs to interpret a number.

Built from the config and from the methods recorded in the cells (each `Measurement` says how it was
obtained), so the notes describe what was actually measured, not what was intended.
"""

from __future__ import annotations

from typing import Any

from tawq_core.bench.config import BenchConfig
from tawq_core.pipeline import QatInit
from tawq_core.pipeline.deployed import DEPLOYED, kernel_summary
from tawq_core.plugin_api.quantizer import QuantMode


def _methods(records: list[dict[str, Any]], path: tuple[str, ...]) -> dict[str, str]:
    """backend -> method string of an available measurement at `path`."""
    found: dict[str, str] = {}
    for r in records:
        value: Any = r
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, dict) and value.get("value") is not None and value.get("method"):
            found.setdefault(r["backend"], value["method"])
    return found


def _per_backend(label: str, methods: dict[str, str]) -> list[str]:
    if len(set(methods.values())) == 1:
        return [f"{label}: {next(iter(methods.values()))}"]
    return [f"{label} on {backend}: {method}" for backend, method in methods.items()]


def _form_label(record: dict[str, Any], form: dict[str, Any]) -> str:
    name = form.get("form")
    suffix = f" ({name})" if name and (record.get("mode") == QuantMode.NONE.value or name != DEPLOYED) else ""
    return f"{record['quantizer']}{suffix}/{record['backend']}"


def _deployed_notes(records: list[dict[str, Any]]) -> list[str]:
    """Which kernels each row ran (layers per kernel) and how its form agreed with the model it came from."""
    found: dict[str, str] = {}
    for r in records:
        for form in [r.get("deployed"), *(v.get("deployed") for v in r.get("variants", {}).values())]:
            if not isinstance(form, dict):
                continue
            text = kernel_summary(form.get("kernels") or {})
            agree = form.get("agreement")
            if agree:
                text += (f"; on the timed batch {agree['predictions_equal']}/{agree['samples']} predictions equal "
                         f"the reference's, max logit difference {agree['max_rel_diff']:.1e} of max |logit|")
            if form.get("note"):
                text += f"; {form['note']}"
            found.setdefault(_form_label(r, form), text)
    return [f"kernels of {label}: {text}" for label, text in found.items()]


def _recipe(cfg: BenchConfig, qat: bool) -> str:
    tc = cfg.train_config(cfg.seeds[0], qat=qat)
    distill = (f", distilled from the fp32 model of the same seed (KL weight {tc.distill_weight:g}, temperature "
               f"{tc.distill_temperature:g})" if tc.distill else ", labels only (no distillation)" if qat else "")
    return (f"{tc.epochs} epochs, batch {tc.batch_size}, AdamW lr {tc.lr:g}, weight decay {tc.weight_decay:g}, "
            f"warm-up {tc.warmup_epochs:g} epoch(s){distill}")


def notes(cfg: BenchConfig, records: list[dict[str, Any]], modes: dict[str, QuantMode]) -> list[str]:
    m = cfg.measure
    test_n = next((r.get("test_samples") for r in records if r.get("test_samples")), "?")
    lines = [
        f"top-1: accuracy on the {cfg.dataset} test split ({test_n} samples), %, mean ± sample std (n-1) over "
        f"seeds {', '.join(map(str, cfg.seeds))}; Δ vs fp32: quantized minus fp32 of the same seed, in "
        "percentage points",
        f"fp32: trained {_recipe(cfg, qat=False)}",
    ]
    qat = [q for q in cfg.quantizers if modes.get(q) is QuantMode.QAT]
    ptq = [q for q in cfg.quantizers if modes.get(q) not in (QuantMode.QAT, QuantMode.NONE)]
    if qat:
        how = ("fine-tuned from the trained fp32 model of the same seed" if cfg.qat_init is QatInit.FP32
               else "trained from scratch on the same data, split and seed")
        lines.append(f"QAT ({', '.join(qat)}): {how}, the same recipe for every QAT row: {_recipe(cfg, qat=True)} "
                     f"(qat_init = \"{cfg.qat_init.value}\")")
    if ptq:
        lines.append(f"PTQ ({', '.join(ptq)}): the trained fp32 model of the same seed, quantized and calibrated "
                     f"on {m.calibration_batches} training batches, no retraining")
    layers = next((r.get("quantized_layers") for r in records if r.get("quantized_layers")), None)
    if layers and layers.get("summary"):
        lines.append(f"quantized layers: {layers['summary']}")
    timers = {r["backend"]: r["latency"]["method"] for r in records if isinstance(r.get("latency"), dict)
              and r["latency"].get("method")}
    if timers:
        lines += _per_backend(
            "latency: one forward pass of the row's form (quantized rows: the deployed model of "
            "`tawq_core.deploy`, packed weights on tawq's kernels; fp32: torch's dense eval, the reference, and "
            f"`tawq_core.deploy.spike_driven`) at batch 1 and on a test batch of N = {m.batch_size} "
            f"(T = {cfg.timesteps}); per sample = per batch / batch size; throughput = batch size / median; "
            "measured with", timers)
    lines += _deployed_notes(records)
    for label, path in (("energy est. conventional", ("energy", "conventional")),
                        ("energy est. exact ternary-aware", ("energy", "exact")),
                        ("energy measured", ("energy", "measured")), ("peak memory", ("memory",))):
        lines += _per_backend(label, _methods(records, path))
    lines += [
        "weights: packed bytes (codes + scales) of the quantized layers plus 4 bytes per remaining parameter "
        "and buffer; bits/weight: code bits per weight of the quantized layers (fp32: 32); compression: fp32 "
        "model bytes / weights; resident weights: every tensor the timed form keeps reachable after a forward "
        "(packed codes and side tables, fp32 stem, head, biases and norms; each storage once: "
        "`tawq_core.deploy.resident_bytes`)",
        f"mean firing rate: spikes per neuron per timestep over {m.ops_batches} test batches",
        "NeuroBench columns: NeuroBench 2.3.0's Footprint and SynapticOperations (Effective_ACs: pairs of a "
        "non-zero spike and a non-zero weight; Effective_MACs: the same for non-binary inputs; per sample over "
        f"all T, on the {m.ops_batches} test batches) counted bit-aware by tawq: quantized weights at their "
        "packed size and with their zeros, per timestep (docs/bench.md, NeuroBench)",
        "train time: seconds to produce the model from its starting point (PTQ: calibration only; QAT "
        "fine-tuned from fp32: the fine-tuning only)",
    ]
    return lines
