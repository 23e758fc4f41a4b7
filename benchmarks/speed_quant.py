"""Parts 2 and 3: TaWQ's training overhead over fp32, and inference from packed files.

Part 2 (QAT overhead): the same tiny model in fp32 and quantized with ``tawq_core.quantize(model,
"tawq", timesteps=4)`` (default policy: stem and head stay fp32), train steps timed in turns; the
figure is tawq step time / fp32 step time. ``weights ms`` is the quantizer alone: the effective
weights of every quantized layer, forward and backward, as one training step computes them.

Part 3 (packed inference): the model exported with ``tawq_core.export(..., "tawq", ...)`` and
rebuilt with ``tawq_core.load_packed`` (tawq and ptq8) in both forms: deployed (the default: packed
weights on tawq's kernels) and fake-quant (``deploy=False``: float effective weights, what loading gave
before deployment existed), against the fp32 model in torch eval and deployed spike-driven. Latency is
an eval forward under ``torch.inference_mode`` at batch 1 and at the training batch. Weight memory: the
packed file's bytes, and the bytes the loaded model keeps resident (`tawq_core.deploy.resident_bytes`:
every tensor reachable from the module, frozen quantizers' effective weights included, each storage once).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from speed_timing import interleaved, ratio, summary
from torch import Tensor, nn

import tawq_core
from tawq_core.deploy import resident_bytes, spike_driven

T = 4
QAT_TARGET = 1.2


@dataclass(frozen=True)
class ModelSpec:
    name: str
    options: dict[str, Any]
    sample: tuple[int, ...]
    batch: int
    label: str = field(default="")

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return tawq_core.create("model", self.name, num_classes=10, sample_shape=self.sample, **self.options)


MODELS = (
    ModelSpec("sew-resnet", {"layers": (1, 1, 1), "width": 32}, (1, 40), 64, "SEW-ResNet (1,1,1)x32, MNIST-1D [1, 40]"),
    ModelSpec("spikingformer", {"embed_dim": 64, "depth": 1, "heads": 4}, (3, 16, 16), 32,
              "Spikingformer-1-64, 3x16x16"),
)


# the quantizer's cost is per step, not per sample: a larger batch shows how the ratio falls
QAT_MODELS = (*MODELS, ModelSpec("sew-resnet", MODELS[0].options, MODELS[0].sample, 128, MODELS[0].label))


def _data(spec: ModelSpec, batch: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sample = torch.rand(batch, *spec.sample, generator=gen)
    return sample.unsqueeze(0).repeat(T, *([1] * sample.dim())), torch.randint(0, 10, (batch,), generator=gen)


def _train_step(net: nn.Module, x: Tensor, y: Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step() -> None:
        net.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def _weights_only(net: nn.Module) -> Callable[[], None]:
    layers = [layer for _, layer in tawq_core.quantized_layers(net)]

    def weights() -> None:
        total = sum(layer.quantizer.weights(layer.weight, layer.timesteps).sum() for layer in layers)
        total.backward()

    return weights


def _inference(net: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    net.eval()

    def infer() -> Tensor:
        with torch.inference_mode():
            return net(x)

    return infer


def _quant_kernel() -> str:
    """Which implementation computes tawq's dynamics on CPU float32 weights."""
    from tawq_plugins.quantizers import _calcium_cpu

    why = _calcium_cpu.unsupported(torch.zeros(2))
    return f"eager ({why})" if why else "fused numba dynamics + eager slopes/backward"


def qat_overhead(warmup: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for spec in QAT_MODELS:
        fp32 = spec.build()
        quantized = copy.deepcopy(fp32)
        report = tawq_core.quantize(quantized, "tawq", timesteps=T)
        x, y = _data(spec, spec.batch)
        cases = {"fp32": _train_step(fp32, x, y), "tawq": _train_step(quantized, x, y),
                 "weights": _weights_only(quantized)}
        ms = {name: summary(s) for name, s in interleaved(cases, warmup, repeats).items()}
        rows.append({"model": spec.name, "label": spec.label, "options": spec.options, "batch": spec.batch,
                     "timesteps": T, "parameters": sum(p.numel() for p in fp32.parameters()),
                     "quantized_layers": len(report.swapped), "quantized_fraction": round(report.fraction_quantized, 4),
                     "fp32_ms": ms["fp32"], "tawq_ms": ms["tawq"], "weights_ms": ms["weights"],
                     "tawq_over_fp32": ratio(ms["tawq"], ms["fp32"]), "quantizer_kernel": _quant_kernel(),
                     "target": QAT_TARGET})
    return rows


def _exported(spec: ModelSpec, quantizer: str, folder: Path) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """The packed file of `spec` quantized with `quantizer`, loaded deployed and as fake-quant."""
    model = spec.build()
    tawq_core.quantize(model, quantizer, timesteps=T)
    path = folder / f"{spec.name}-{quantizer}.tawq"
    report = tawq_core.export(model, "tawq", path, model_name=spec.name,
                              model_options={"num_classes": 10, "sample_shape": spec.sample, **spec.options})
    return {quantizer: (tawq_core.load_packed(path), report.to_dict()),
            f"{quantizer} fake-quant": (tawq_core.load_packed(path, deploy=False), report.to_dict())}


def packed_inference(warmup: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in MODELS:
            fp32 = spec.build().eval()
            loaded = {"fp32": (fp32, None), "fp32 spike-driven": (spike_driven(fp32), None)}
            for quantizer in ("tawq", "ptq8"):
                loaded.update(_exported(spec, quantizer, Path(tmp)))
            row: dict[str, Any] = {"model": spec.name, "label": spec.label, "timesteps": T, "variants": {}}
            for batch in (1, spec.batch):
                x, _ = _data(spec, batch, seed=1)
                cases = {name: _inference(net, x) for name, (net, _) in loaded.items()}
                samples = interleaved(cases, warmup, repeats)
                for name, s in samples.items():
                    row["variants"].setdefault(name, {}).setdefault("latency_ms", {})[str(batch)] = summary(s)
            fp32_bytes = sum(p.numel() * p.element_size() for p in fp32.parameters()) + sum(
                b.numel() * b.element_size() for b in fp32.buffers())
            for name, (net, report) in loaded.items():
                v = row["variants"][name]
                v["resident_weight_bytes"] = resident_bytes(net)
                v["file_bytes"] = report["bytes"] if report else None
                v["bits_per_weight"] = report["bits_per_weight"] if report else 32.0
                v["bits_per_weight_total"] = report["bits_per_weight_total"] if report else 32.0
                v["bit_exact_reload"] = report["bit_exact"] if report else None
            row["variants"]["fp32"]["state_bytes"] = fp32_bytes
            rows.append(row)
    return rows


def qat_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | batch | fp32 step ms | tawq step ms | tawq / fp32 | quantizer alone ms | target |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "met" if r["tawq_over_fp32"] <= r["target"] else "missed"
        lines.append(f"| {r['label']} | {r['batch']} | {r['fp32_ms']['median']:.2f} | {r['tawq_ms']['median']:.2f} | "
                     f"{r['tawq_over_fp32']:.2f} | {r['weights_ms']['median']:.2f} | <= {r['target']} {met} |")
    return lines


def packed_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | weights | batch 1 ms | batch N ms | x fp32 (1 / N) | file KiB | resident weight KiB | "
             "bits/weight (codes / +scales) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fp32 = r["variants"]["fp32"]["latency_ms"]
        for name, v in r["variants"].items():
            latency = v["latency_ms"]
            one, n = sorted(latency, key=int)
            file_kib = "-" if v["file_bytes"] is None else f"{v['file_bytes'] / 1024:.1f}"
            lines.append(f"| {r['label']} | {name} | {latency[one]['median']:.2f} | "
                         f"{latency[n]['median']:.2f} (B={n}) | "
                         f"{ratio(fp32[one], latency[one]):.2f} / {ratio(fp32[n], latency[n]):.2f} | {file_kib} | "
                         f"{v['resident_weight_bytes'] / 1024:.1f} | {v['bits_per_weight']:.2f} / "
                         f"{v['bits_per_weight_total']:.2f} |")
    return lines
