"""The sentences under the matrix: every convention and recipe a reader needs to interpret a number.

Built from the config and from the methods recorded in the cells (each `Measurement` says how it was
obtained), so the notes describe what was actually measured, not what was intended.
"""

from __future__ import annotations

from typing import Any

from tawq_core.bench.config import REFERENCE, BenchConfig


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


def _recipe(cfg: BenchConfig, qat: bool) -> str:
    tc = cfg.train_config(cfg.seeds[0], qat=qat)
    return f"{tc.epochs} epochs, batch {tc.batch_size}, AdamW lr {tc.lr:g}, weight decay {tc.weight_decay:g}"


def notes(cfg: BenchConfig, records: list[dict[str, Any]], modes: dict[str, str]) -> list[str]:
    m = cfg.measure
    test_n = next((r.get("test_samples") for r in records if r.get("test_samples")), "?")
    lines = [
        f"top-1: accuracy on the {cfg.dataset} test split ({test_n} samples), %, mean ± sample std (n-1) over "
        f"seeds {', '.join(map(str, cfg.seeds))}; Δ vs fp32: quantized minus fp32 of the same seed, in "
        "percentage points",
        f"fp32: trained {_recipe(cfg, qat=False)}",
    ]
    qat = [q for q in cfg.quantizers if modes.get(q) == "qat"]
    ptq = [q for q in cfg.quantizers if q != REFERENCE and modes.get(q) != "qat"]
    if qat:
        how = ("fine-tuned from the trained fp32 model of the same seed" if cfg.qat_init == "fp32"
               else "trained from scratch on the same data, split and seed")
        lines.append(f"QAT ({', '.join(qat)}): {how}, {_recipe(cfg, qat=True)} (qat_init = \"{cfg.qat_init}\")")
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
            f"latency: one forward pass of a test batch of {m.batch_size} (T = {cfg.timesteps}); per sample = "
            "per batch / batch size; throughput = batch size / median; measured with", timers)
    for label, path in (("energy est. conventional", ("energy", "conventional")),
                        ("energy est. exact ternary-aware", ("energy", "exact")),
                        ("energy measured", ("energy", "measured")), ("peak memory", ("memory",))):
        lines += _per_backend(label, _methods(records, path))
    lines += [
        "weights: packed bytes (codes + scales) of the quantized layers plus 4 bytes per remaining parameter "
        "and buffer; bits/weight: code bits per weight of the quantized layers (fp32: 32); compression: fp32 "
        "model bytes / weights",
        f"mean firing rate: spikes per neuron per timestep over {m.ops_batches} test batches",
        "train time: seconds to produce the model from its starting point (PTQ: calibration only; QAT "
        "fine-tuned from fp32: the fine-tuning only)",
    ]
    return lines
