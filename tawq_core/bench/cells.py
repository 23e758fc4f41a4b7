"""One model's work: build, quantize, calibrate, score, size, estimate energy, measure on a backend.

Each function does one step with the project's building blocks (registry factories, `quantize`,
`evaluate`, the quantizer's own `pack`, the op counter and energy model, the backend's timer and
meters) and returns plain JSON-ready dicts, so the runner can cache them as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from tawq_core.backend import Backend
from tawq_core.bench.config import BenchConfig
from tawq_core.bench.forms import TORCH_DENSE, Form, agreement, forms, layer_kernels
from tawq_core.calibration import calibrate as fit_quantizer_state
from tawq_core.data import DatasetSplits, encode_batch
from tawq_core.latency import LatencyStats, measure_latency
from tawq_core.measurement import Measurement
from tawq_core.quantization import quantize, quantized_layers
from tawq_core.quantizer import Quantizer, QuantMode
from tawq_core.registry import create
from tawq_core.training import evaluate

FP32_BYTES = 4


def build_model(cfg: BenchConfig, splits: DatasetSplits) -> nn.Module:
    return create("model", cfg.model, neuron=cfg.neuron, neuron_options=cfg.neuron_options or None,
                  **splits.model_options(cfg.model_options, "model_options:"))


def new_quantizer(cfg: BenchConfig, name: str) -> Quantizer:
    """A fresh instance per model: nothing a quantizer fits (PTQ) is shared between seeds. For a mixed
    row, its base quantizer (the per-layer ones come from the row's policy)."""
    base = cfg.row_quantizers(name)[0]
    return create("quantizer", base, **cfg.quantizer_options.get(base, {}))


def row_mode(cfg: BenchConfig, name: str) -> str:
    """How a row's model is produced: its quantizer's mode; a mixed row with any QAT quantizer is QAT."""
    modes = {create("quantizer", q).mode.value for q in cfg.row_quantizers(name)}
    return QuantMode.QAT.value if QuantMode.QAT.value in modes else new_quantizer(cfg, name).mode.value


def apply_quantizer(model: nn.Module, cfg: BenchConfig, name: str) -> dict[str, Any]:
    """Swap the policy's layers in place; the report (layers, parameters quantized) as a dict."""
    report = quantize(model, new_quantizer(cfg, name), cfg.timesteps, policy=cfg.quant_policy(name))
    record = report.to_dict()
    skipped = sorted({f"{s['name']} ({s['reason']})" for s in record["skipped"]})
    record["summary"] = (f"{len(report.swapped)} conv/linear layers, {100 * report.fraction_quantized:.1f}% of "
                         f"parameters; kept full precision: {', '.join(skipped) or 'none'} and all norms")
    return record


def _loader(dataset: Any, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def model_inputs(cfg: BenchConfig, splits: DatasetSplits, dataset: Any, batch_size: int, batches: int,
                 device: torch.device) -> list[torch.Tensor]:
    """The first `batches` batches of `dataset` in order, encoded time-major ``[T, B, ...]``."""
    return [encode_batch(x, splits.encoding, cfg.timesteps).to(device)
            for x, _ in islice(_loader(dataset, batch_size), batches)]


def calibrate(model: nn.Module, cfg: BenchConfig, splits: DatasetSplits, device: torch.device) -> None:
    """Fit the quantizer state of every quantized layer (`tawq_core.calibrate`) on model-ready ``[T, B, ...]``
    batches of the training split, in order (deterministic)."""
    batch_size = cfg.train_config(cfg.seeds[0]).batch_size
    inputs = model_inputs(cfg, splits, splits.train, batch_size, cfg.measure.calibration_batches, device)
    model.to(device)
    fit_quantizer_state(model, inputs)


def accuracy(model: nn.Module, cfg: BenchConfig, splits: DatasetSplits, device: torch.device) -> float:
    batch = cfg.train_config(cfg.seeds[0]).eval_batch_size
    return evaluate(model, splits.test, splits, cfg.timesteps, device, batch_size=batch)


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
    from tawq_core.energy import estimate_energy
    from tawq_core.sops import count_ops

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


def _measure_form(form: Form, x: torch.Tensor, cfg: BenchConfig, backend: Backend) -> dict[str, Any]:
    """Latency at the measure batch (with peak memory and metered energy) and at batch 1, resident bytes."""
    from tawq_core.deploy import resident_bytes
    from tawq_core.energy import measure_energy

    m, net, batch = cfg.measure, form.net, x.shape[1]

    def forward(inputs: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                net(inputs)
        return run

    with backend.peak_memory() as memory:
        latency = measure_latency(backend, forward(x), warmup=m.warmup, repeats=m.repeats)
    latency_b1 = measure_latency(backend, forward(x[:, :1].contiguous()), warmup=m.warmup, repeats=m.repeats)
    energy = measure_energy(backend, forward(x), min_seconds=m.energy_seconds)
    return {
        "latency": _latency_record(latency, batch),
        "latency_b1": _latency_record(latency_b1, 1),
        "memory": memory.result.to_dict(),
        "energy": {"measured": _per_sample(energy, batch)},
        "deployed": {"form": form.name, "resident_bytes": resident_bytes(net), "kernels": layer_kernels(net),
                     "note": form.note},
    }


def measure(model: nn.Module, cfg: BenchConfig, splits: DatasetSplits, backend: Backend) -> dict[str, Any]:
    """Latency at batch 1 and at the measure batch, peak memory, metered energy and resident weight bytes of
    the row's deployed form (`tawq_core.bench.forms`); the fp32 row's spike-driven form goes to
    ``variants``. Each form's agreement with its reference (the model itself) is recorded on the same batch."""
    (x,) = model_inputs(cfg, splits, splits.test, cfg.measure.batch_size, 1, backend.device)
    first, *others = forms(model, backend)
    record = _measure_form(first, x, cfg, backend)
    if first.name != TORCH_DENSE:
        reference = copy.deepcopy(model).to(backend.device).eval()
        record["deployed"]["agreement"] = agreement(reference, first.net, x)
    record["variants"] = {}
    for form in others:
        record["variants"][form.name] = _measure_form(form, x, cfg, backend)
        record["variants"][form.name]["deployed"]["agreement"] = agreement(first.net, form.net, x)
    return record
