"""The bench's side of one model: the pipeline's inputs built from a `BenchConfig`, and what is measured of it.

How a model is built, quantized, calibrated, trained and scored is `tawq_core.pipeline` (shared with `tawq
train`); here are the adapters from the config to its typed inputs, and the measurements only the bench
makes: storage from real packed bytes, op counts and energy estimates, NeuroBench's metrics, and latency,
memory and metered energy of the deployed form on a backend. Everything returned is a plain JSON-ready
dict, so the runner can cache it as it is.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import torch
from torch import nn

from tawq_core.bench.config import BenchConfig
from tawq_core.measure.latency import LatencyStats
from tawq_core.measure.measurement import Measurement
from tawq_core.nn.quantization import QuantizeReport, quantized_layers
from tawq_core.pipeline import (
    TORCH_DENSE,
    Calibration,
    Data,
    FormMeasurement,
    MeasureSpec,
    ModelSpec,
    QuantSpec,
    Recipe,
    agreement,
    deployed_forms,
    measure_form,
    quantize_model,
)
from tawq_core.plugin_api.backend import Backend
from tawq_core.plugin_api.data import DatasetSplits
from tawq_core.plugin_api.quantizer import Quantizer, QuantMode
from tawq_core.plugin_api.registry import create

FP32_BYTES = 4


def model_spec(cfg: BenchConfig, splits: DatasetSplits) -> ModelSpec:
    """The preset's network with its neuron and the dataset's class count and sample shape."""
    return ModelSpec(cfg.model, {"neuron": cfg.neuron, "neuron_options": cfg.neuron_options or None,
                                 **splits.model_options(cfg.model_options, "model_options:")})


def build_model(cfg: BenchConfig, splits: DatasetSplits) -> nn.Module:
    """A fresh network of the preset, drawn from the current random state (the scripts in benchmarks/ seed)."""
    spec = model_spec(cfg, splits)
    return create("model", spec.name, **spec.options)


def new_quantizer(cfg: BenchConfig, name: str) -> Quantizer:
    """A fresh instance per model: nothing a quantizer fits (PTQ) is shared between seeds. For a mixed
    row, its base quantizer (the per-layer ones come from the row's policy)."""
    base = cfg.row_quantizers(name)[0]
    return create("quantizer", base, **cfg.quantizer_options.get(base, {}))


def quant_spec(cfg: BenchConfig, row: str) -> QuantSpec:
    """A row's quantizer (fresh) and policy."""
    return QuantSpec(new_quantizer(cfg, row), cfg.quant_policy(row))


def reference_row(cfg: BenchConfig) -> str:
    """The row every other is compared with, known by its mode: the first unquantized one (the config puts
    the built-in fp32 row first)."""
    return next(q for q in cfg.quantizers if quant_spec(cfg, q).mode is QuantMode.NONE)


def row_mode(cfg: BenchConfig, row: str) -> QuantMode:
    """How a row's model is produced (`Recipe.mode`): `QuantMode.NONE` for the reference row only; any other
    row whose quantizer quantizes nothing is produced like PTQ (the reference with its layers swapped in)."""
    mode = quant_spec(cfg, row).mode
    return QuantMode.PTQ if mode is QuantMode.NONE and row != reference_row(cfg) else mode


def recipe(cfg: BenchConfig, splits: DatasetSplits, seed: int, row: str) -> Recipe:
    """How the pipeline produces a row's model for `seed`: the reference row trains with ``[train]``, QAT rows
    with ``[qat]`` from `qat_init`, PTQ rows calibrate a copy of the reference."""
    quant = quant_spec(cfg, row)
    mode = row_mode(cfg, row)
    fp32_train = cfg.train_config(seed)
    return Recipe(model_spec(cfg, splits), cfg.train_config(seed, qat=mode is QuantMode.QAT),
                  None if mode is QuantMode.NONE else quant, cfg.qat_init,
                  Calibration(fp32_train.batch_size, cfg.measure.calibration_batches)
                  if mode is QuantMode.PTQ else None)


def report_record(report: QuantizeReport | None) -> dict[str, Any]:
    """The quantize report as the dict stored with a model, with a one-line summary (``{}`` for fp32)."""
    if report is None:
        return {}
    record = report.to_dict()
    skipped = sorted({f"{s['name']} ({s['reason']})" for s in record["skipped"]})
    record["summary"] = (f"{len(report.swapped)} conv/linear layers, {100 * report.fraction_quantized:.1f}% of "
                         f"parameters; kept full precision: {', '.join(skipped) or 'none'} and all norms")
    return record


def apply_quantizer(model: nn.Module, cfg: BenchConfig, name: str) -> dict[str, Any]:
    """Swap the row's policy layers in place (the pipeline's quantize stage); the report as a dict."""
    return report_record(quantize_model(model, quant_spec(cfg, name), cfg.timesteps))


def model_inputs(cfg: BenchConfig, splits: DatasetSplits, dataset: Any, batch_size: int, batches: int,
                 device: torch.device) -> list[torch.Tensor]:
    """The first `batches` batches of `dataset` in order, encoded time-major ``[T, B, ...]``."""
    return Data(splits, cfg.timesteps).batches(dataset, batch_size, batches, device)


def storage(model: nn.Module, cfg: BenchConfig) -> dict[str, Any]:
    """Inference storage from real bytes: each quantized layer's `pack` output, plus the rest as stored.

    Counted: every parameter and floating-point buffer (norm statistics) a forward pass needs. The
    quantized layers' latent fp32 weights are replaced by their packed form; their biases stay fp32.
    """
    quantized_ids, payload, scales, quantized_numel = set(), 0, 0, 0
    for _, layer in quantized_layers(model):
        with torch.no_grad():
            packed = layer.pack()
        quantized_ids.add(id(layer.weight))
        payload, scales, quantized_numel = payload + packed.payload_bytes, scales + packed.scale_bytes, \
            quantized_numel + packed.numel
    tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
    rest = sum(t.numel() * t.element_size() for t in tensors if id(t) not in quantized_ids)
    fp32_bytes = sum(t.numel() for t in tensors) * FP32_BYTES
    weight_bytes = payload + scales + rest
    return {
        "weight_bytes": weight_bytes,
        "quantized_payload_bytes": payload,
        "quantized_scale_bytes": scales,
        "other_bytes": rest,
        "fp32_bytes": fp32_bytes,
        "params_quantized": quantized_numel,
        "params_total": sum(p.numel() for p in model.parameters()),
        "bits_per_weight": 8.0 * payload / quantized_numel if quantized_numel else 8.0 * FP32_BYTES,
        "bits_per_weight_with_scales": (8.0 * (payload + scales) / quantized_numel if quantized_numel
                                        else 8.0 * FP32_BYTES),
        "compression": fp32_bytes / weight_bytes,
    }


def estimates(model: nn.Module, cfg: BenchConfig, splits: DatasetSplits,
              device: torch.device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Operation counts and firing rates on test batches, and the two energy estimates per sample."""
    from tawq_core.measure.energy import estimate_energy
    from tawq_core.measure.sops import count_ops

    inputs = model_inputs(cfg, splits, splits.test, cfg.measure.batch_size, cfg.measure.ops_batches, device)
    model.to(device).eval()
    report = count_ops(model, inputs)
    energy = estimate_energy(report, cfg.measure.energy_model)
    ops = {"samples": report.samples, "firing_rate": report.firing_rate, **report.to_dict()["totals"]}
    return ops, {"conventional": _per_sample(energy["conventional"]), "exact": _per_sample(energy["exact"]),
                 "energy_model": energy["energy_model"]}


def neurobench(model: nn.Module, cfg: BenchConfig, splits: DatasetSplits, device: torch.device) -> dict[str, Any]:
    """NeuroBench's Footprint, ConnectionSparsity, ActivationSparsity and SynapticOperations under its own key
    names, bit-aware (`tawq_core.interop.neurobench_counts`), on the same test batches as the op counts."""
    from tawq_core.interop.neurobench_counts import neurobench_metrics

    inputs = model_inputs(cfg, splits, splits.test, cfg.measure.batch_size, cfg.measure.ops_batches, device)
    return neurobench_metrics(model.to(device), inputs)


def _per_sample(m: Measurement, samples: int = 1) -> dict[str, Any]:
    """A `Measurement` as a dict, its value divided down to one sample, unit "J/sample"."""
    record = m.to_dict()
    if m.value is not None:
        record.update(value=m.value / samples, unit=f"{m.unit}/sample")
    return record


@cache
def measurement_code() -> dict[str, str]:
    """Source hashes of the code that times a cell: this module (with the deploy package it uses) and the
    deployed kernels it runs, so that editing either re-measures the cells (`keys.cell_key`)."""
    import pkgutil

    from tawq_core.bench.fingerprint import source_digest

    names = [__name__]
    try:
        from tawq_backends import kernels

        names += [f"{kernels.__name__}.{m.name}" for m in pkgutil.iter_modules(kernels.__path__)]
    except ImportError:  # no kernels package: the deployed layers run their dense path
        pass
    return {name: source_digest(name) for name in names}


def _latency_record(latency: LatencyStats, batch: int) -> dict[str, Any]:
    return {"batch_size": batch, "batch_median_s": latency.median_s, "batch_p90_s": latency.p90_s,
            "batch_mean_s": latency.mean_s, "sample_median_s": latency.median_s / batch,
            "sample_p90_s": latency.p90_s / batch, "throughput_sps": batch / latency.median_s,
            "repeats": len(latency.samples), "warmup": latency.warmup, "method": latency.method}


def _record(m: FormMeasurement) -> dict[str, Any]:
    """A form's measurement as the cell record: latency per batch and per sample, memory, energy per sample."""
    assert m.energy is not None  # the bench always meters energy
    return {
        "latency": _latency_record(m.latency, m.batch),
        "latency_b1": _latency_record(m.latency_b1, 1),
        "memory": m.memory.to_dict(),
        "energy": {"measured": _per_sample(m.energy, m.batch)},
        "deployed": {"form": m.form, "resident_bytes": m.resident_bytes, "kernels": m.kernels, "note": m.note},
    }


def measure(model: nn.Module, cfg: BenchConfig, splits: DatasetSplits, backend: Backend) -> dict[str, Any]:
    """Latency at batch 1 and at the measure batch, peak memory, metered energy and resident weight bytes of
    the row's deployed form (the pipeline's deploy and measure stages); the fp32 row's spike-driven form goes to
    ``variants``. Each form's agreement with its reference (the model itself) is recorded on the same batch."""
    (x,) = model_inputs(cfg, splits, splits.test, cfg.measure.batch_size, 1, backend.device)
    m = cfg.measure
    spec = MeasureSpec(m.warmup, m.repeats, m.energy_seconds)
    first, *others = deployed_forms(model, backend)
    record = _record(measure_form(first, x, spec, backend))
    if first.name != TORCH_DENSE:
        reference = copy.deepcopy(model).to(backend.device).eval()
        record["deployed"]["agreement"] = agreement(reference, first.net, x)
    record["variants"] = {}
    for form in others:
        record["variants"][form.name] = _record(measure_form(form, x, spec, backend))
        record["variants"][form.name]["deployed"]["agreement"] = agreement(first.net, form.net, x)
    return record
