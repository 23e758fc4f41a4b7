"""Part `deploy`: deployed inference (packed weights, tawq's kernels) against torch's dense fp32 eval.

For every network: the fp32 model in torch eval (the reference of every ratio), the same weights
deployed spike-driven (`tawq_core.deploy.spike_driven`: fp32 columns accumulated for active inputs),
and each quantizer's model exported to a packed file and loaded with ``tawq_core.load_packed(path)``
(the deployed form, built from the packed codes). All cases are timed in turns at batch 1 and batch N
(`speed_timing.interleaved`). Resident bytes are `tawq_core.deploy.resident_bytes` (every tensor
reachable, each storage once), cross-checked in a fresh process by the RSS growth over load + first
forward (`speed_rss`).

Networks: SEW-ResNet (1,1)x48 on MNIST-1D as the default preset makes it (`speed_trained`: fp32 trained,
QAT quantizers fine-tuned from it, cached under results/speed-deploy/), Spikingformer-1-64 on 3x16x16,
and SEW-ResNet-18 and Spikingformer-4-384 on 3x32x32 at N = 16. The untrained nets get their BatchNorm
gains scaled so that the median spiking layer fires 10-15 % on the benchmark input, and their quantized
models are the fp32 weights quantized without fine-tuning (speed does not depend on it; every row's
median firing rate is reported). Then one layer (SEW-ResNet-18's first stage conv, 64->64 3x3 at 32x32)
deployed ternary vs fp32 dense at input firing rates 2-50 %.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import speed_rss
import speed_trained
import torch
from speed_timing import interleaved, ratio, summary
from speed_trained import TrainedNet
from torch import Tensor, nn

import tawq_core
from tawq_core.deploy import DeployedLayer, deploy_packed_layer, kernels_used, resident_bytes, spike_driven

T = 4
QUANTIZERS = ("tawq", "mtawq", "ternary", "binary", "ptq8")
TARGET_RATE = (0.10, 0.15)
SWEEP_RATES = (0.02, 0.05, 0.10, 0.20, 0.30, 0.50)
FP32, SPIKE = "fp32 (torch dense)", "fp32 (spike-driven)"


@dataclass(frozen=True)
class DeployNet:
    key: str
    label: str
    model: str
    options: dict[str, Any]
    sample: tuple[int, ...]
    batch: int
    large: bool = False  # fewer timed repeats: one forward takes a large part of a second
    quick: dict[str, Any] = field(default_factory=dict)  # smaller sizes for --quick (smoke runs)


NETS = (
    DeployNet("spikingformer-1-64", "Spikingformer-1-64, 3x16x16", "spikingformer",
              {"embed_dim": 64, "depth": 1, "heads": 4}, (3, 16, 16), 32, quick={"embed_dim": 16, "heads": 2}),
    DeployNet("sew-resnet-18", "SEW-ResNet-18 (2,2,2,2)x64, 3x32x32", "sew-resnet",
              {"layers": (2, 2, 2, 2), "width": 64}, (3, 32, 32), 16, True, quick={"layers": (1, 1), "width": 8}),
    DeployNet("spikingformer-4-384", "Spikingformer-4-384, 3x32x32", "spikingformer",
              {"embed_dim": 384, "depth": 4, "heads": 8}, (3, 32, 32), 16, True,
              quick={"embed_dim": 32, "depth": 1, "heads": 2}),
)


def _neuron_rates(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Fraction of ones in every neuron's output on `x`, by module name."""
    rates: dict[str, float] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: rates.__setitem__(name, float(
        (out != 0).float().mean()))) for name, m in model.named_modules() if isinstance(m, tawq_core.Neuron)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return rates


def _median(rates: dict[str, float]) -> float:
    return statistics.median(rates.values()) if rates else 0.0


def scale_to_rate(model: nn.Module, x: Tensor, low: float = TARGET_RATE[0], high: float = TARGET_RATE[1]) -> float:
    """Multiply every BatchNorm gain by one factor, found by bisection on its log, until the median spiking
    layer fires in [low, high] on `x`; returns the factor (the untrained nets are otherwise nearly silent)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    base = [m.weight.detach().clone() for m in norms]
    lo, hi, gain = -3.0, 6.0, 1.0
    for _ in range(16):
        gain = 2.0 ** ((lo + hi) / 2)
        with torch.no_grad():
            for m, w in zip(norms, base, strict=True):
                m.weight.copy_(w * gain)
        rate = _median(_neuron_rates(model, x))
        if low <= rate <= high:
            break
        lo, hi = ((lo + hi) / 2, hi) if rate < low else (lo, (lo + hi) / 2)
    return gain


def _analog(sample: tuple[int, ...], batch: int, seed: int) -> Tensor:
    x = torch.rand(batch, *sample, generator=torch.Generator().manual_seed(seed))
    return x.unsqueeze(0).repeat(T, *([1] * x.dim()))


def _inference(net: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    def infer() -> Tensor:
        with torch.inference_mode():
            return net(x)
    return infer


def deployable_share(fp32: nn.Module, layer_names: set[str], x: Tensor, repeats: int) -> dict[str, float]:
    """Fraction of the fp32 forward spent in the layers a deployed form replaces (forward hooks around them),
    median over `repeats`; ``ceiling`` = 1 / (1 - share) is the most any deployed kernel could speed the whole
    model up by (Amdahl: stem, head, BatchNorm, neurons and pooling keep their fp32 time)."""
    spent: list[float] = []
    starts: dict[str, float] = {}
    modules = dict(fp32.named_modules())

    def begin(name: str) -> Callable[..., None]:
        return lambda *_: starts.__setitem__(name, time.perf_counter())

    def end(name: str) -> Callable[..., None]:
        return lambda *_: spent.append(time.perf_counter() - starts[name])

    hooks = [h for name in sorted(layer_names) for h in (modules[name].register_forward_pre_hook(begin(name)),
                                                         modules[name].register_forward_hook(end(name)))]
    shares = []
    try:
        with torch.inference_mode():
            for _ in range(repeats + 1):
                spent.clear()
                start = time.perf_counter()
                fp32(x)
                shares.append(sum(spent) / (time.perf_counter() - start))
    finally:
        for h in hooks:
            h.remove()
    share = statistics.median(shares[1:])
    return {"share": round(share, 4), "ceiling": round(1 / max(1e-9, 1 - share), 2)}


def _agreement(reference: nn.Module, net: nn.Module, x: Tensor) -> dict[str, Any]:
    with torch.inference_mode():
        want, got = reference(x), net(x)
    return {"predictions_equal": int((want.argmax(-1) == got.argmax(-1)).sum()), "samples": int(x.shape[1]),
            "max_rel_diff": float((want - got).abs().max() / want.abs().max().clamp_min(1e-12))}


def _quantized_copy(fp32: nn.Module) -> Callable[[str], nn.Module]:
    def quantized(name: str) -> nn.Module:
        model = copy.deepcopy(fp32)
        tawq_core.quantize(model, name, T)
        return model
    return quantized


def _variants(fp32: nn.Module, name: str, options: dict[str, Any], folder: Path, rate_input: Tensor,
              quantized: Callable[[str], nn.Module]) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """fp32 dense, fp32 spike-driven and every quantizer's model (`quantized(name)`) deployed from its packed
    file; per-variant facts."""
    nets: dict[str, nn.Module] = {FP32: fp32, SPIKE: spike_driven(fp32, backend="cpu")}
    facts: dict[str, Any] = {FP32: {"file": None}, SPIKE: {"file": None}}
    for q in QUANTIZERS:
        model = quantized(q)
        path = folder / f"{name}-{q}.tawq"
        report = tawq_core.export(model.eval(), "tawq", path, model_name=name, model_options=options, verify=False)
        nets[q] = tawq_core.load_packed(path)
        rates = _neuron_rates(model, rate_input)
        facts[q] = {"file": str(path), "file_bytes": report.file_bytes, "bits_per_weight": report.bits_per_weight,
                    "bits_per_weight_total": report.bits_per_weight_total, "median_rate": _median(rates),
                    "agreement_with_fake_quant": _agreement(model, nets[q], rate_input)}
    return nets, facts


def measure_net(label: str, fp32: nn.Module, name: str, options: dict[str, Any], x: Tensor, warmup: int,
                repeats: int, folder: Path, scale: float | None, rss: bool = True,
                quantized: Callable[[str], nn.Module] | None = None, batch_1_only: tuple[str, ...] = ()
                ) -> dict[str, Any]:
    """One network's rows: every form timed in turns at batch 1 and N, resident bytes, kernels, firing rates,
    and (`rss`) the RSS cross-check in a child process. `quantized(name)`: each quantizer's model (default:
    the fp32 weights quantized without fine-tuning). Forms in `batch_1_only` are timed at batch 1 only (the
    spike-driven form on the large nets: seconds per batch-N forward would take the part past 5 minutes)."""
    started = time.perf_counter()
    rates = _neuron_rates(fp32, x[:, :2])
    nets, facts = _variants(fp32, name, options, folder, x[:, :2], quantized or _quantized_copy(fp32))
    row: dict[str, Any] = {"label": label, "model": name, "options": options, "batch": int(x.shape[1]),
                           "timesteps": T, "bn_gain": scale, "layer_rates": rates, "median_rate": _median(rates),
                           "repeats": repeats, "variants": {}}
    deployable = {name for name, m in nets[SPIKE].named_modules() if isinstance(m, DeployedLayer)}
    row["deployable_share"] = {}
    for batch in (1, int(x.shape[1])):
        xb = x[:, :batch].contiguous()
        row["deployable_share"][str(batch)] = deployable_share(fp32, deployable, xb, max(3, repeats))
        timed = {k: net for k, net in nets.items() if batch == 1 or k not in batch_1_only}
        samples = interleaved({k: _inference(net, xb) for k, net in timed.items()}, warmup, repeats)
        for k, s in samples.items():
            row["variants"].setdefault(k, {}).setdefault("latency_ms", {})[str(batch)] = summary(s)
    for k, net in nets.items():
        v = row["variants"][k]
        v.update(facts[k], resident_bytes=resident_bytes(net), kernels=kernels_used(net))
        if k in batch_1_only:
            v["not_timed"] = {str(x.shape[1]): "seconds per forward at this batch; timed at batch 1 only"}
        v["speedup_vs_fp32"] = {b: ratio(row["variants"][FP32]["latency_ms"][b], lat)
                                for b, lat in v["latency_ms"].items()}
    row["variants"][SPIKE]["agreement_with_fp32"] = _agreement(fp32, nets[SPIKE], x[:, :2])
    fp32_bytes = row["variants"][FP32]["resident_bytes"]
    for v in row["variants"].values():
        v["resident_vs_fp32"] = round(v["resident_bytes"] / fp32_bytes, 4)
    files = {k: facts[k].get("file") for k in nets}
    row["rss"] = speed_rss.probe(fp32, name, options, files, folder, x[:, :1]) if rss else {}
    row["elapsed_s"] = round(time.perf_counter() - started, 1)
    return row


def rate_sweep(warmup: int, repeats: int, quick: bool, rates: tuple[float, ...] = SWEEP_RATES) -> dict[str, Any]:
    """One conv layer: deployed ternary vs fp32 dense at input firing rates 2-50 %, batch 1 and 16."""
    channels, size = (16, 16) if quick else (64, 32)
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
    quantizer = tawq_core.create("quantizer", "ternary")
    with torch.no_grad():
        packed = quantizer.pack(conv.weight, T)
    deployed = deploy_packed_layer(conv, packed, quantizer, backend="cpu").eval()
    result: dict[str, Any] = {"layer": f"conv {channels}->{channels} 3x3, {size}x{size}, T = {T}", "points": [],
                              "rates": list(rates),
                              "kernels": kernels_used(nn.Sequential(deployed))}
    for batch in (1, 16):
        for rate in rates:
            gen = torch.Generator().manual_seed(int(rate * 1000) + batch)
            x = (torch.rand(T, batch, channels, size, size, generator=gen) < rate).float()
            s = interleaved({"fp32": _inference(conv, x.flatten(0, 1)), "ternary": _inference(deployed, x)},
                            warmup, repeats)
            fp32, tern = summary(s["fp32"]), summary(s["ternary"])
            result["points"].append({"batch": batch, "rate": rate, "fp32_ms": fp32, "ternary_ms": tern,
                                     "speedup": ratio(fp32, tern)})
    return result


def run(warmup: int, repeats: int, quick: bool, cache: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every network's rows and the one-layer rate sweep; `cache` holds (or receives) the trained MNIST-1D
    model."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trained = TrainedNet(quick, cache, log)
        rows.append(measure_net(speed_trained.LABEL, trained.fp32(), "sew-resnet", trained.options, trained.inputs(),
                                warmup, repeats, folder, None, quantized=trained.quantized))
        rows[-1]["training"] = trained.describe()
        for net in NETS:
            options = {"num_classes": 10, "sample_shape": net.sample, **net.options, **(net.quick if quick else {})}
            torch.manual_seed(0)
            fp32 = tawq_core.create("model", net.model, **options).eval()
            x = _analog(net.sample, net.batch, seed=1)
            gain = scale_to_rate(fp32, x[:, :2])
            reps = max(3, repeats // 6) if net.large else repeats  # a forward takes 0.3-8 s (spike-driven)
            log(f"deploy: {net.label} (median layer rate {_median(_neuron_rates(fp32, x[:, :2])):.3f}; "
                f"{rows[-1]['label']} took {rows[-1]['elapsed_s']} s)")
            rows.append(measure_net(net.label, fp32, net.model, options, x, min(warmup, 1) if net.large else warmup,
                                    reps, folder, gain, batch_1_only=(SPIKE,) if net.large else ()))
    return {"rows": rows, "rate_sweep": rate_sweep(min(warmup, 1), max(3, repeats // 4), quick)}


def table(result: dict[str, Any]) -> list[str]:
    lines = ["| net | form | batch 1 ms | batch N ms | x fp32 (1 / N) | resident KiB | x fp32 | RSS growth KiB | "
             "median firing | kernels |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        n = str(r["batch"])
        for k, v in r["variants"].items():
            lat, up = v["latency_ms"], v["speedup_vs_fp32"]
            rss = r["rss"].get(k, {}).get("growth_bytes")
            kernels = ", ".join(sorted(set(v["kernels"].values()))) or "torch"
            rate = v.get("median_rate", r["median_rate"])
            at_n, up_n = (f"{lat[n]['median']:.2f}", f"{up[n]:.2f}") if n in lat else ("not timed", "-")
            lines.append(f"| {r['label']} | {k} | {lat['1']['median']:.2f} | {at_n} (B={n}) | "
                         f"{up['1']:.2f} / {up_n} | {v['resident_bytes'] / 1024:,.1f} | "
                         f"{v['resident_vs_fp32']:.2f} | {'n/a' if rss is None else f'{rss / 1024:,.0f}'} | "
                         f"{rate:.3f} | {kernels} |")
    lines += ["", "Share of the fp32 forward in the layers the deployed forms replace (the rest keeps its fp32 time), "
              "and the speed-up ceiling it sets, 1 / (1 - share):", "",
              "| net | batch 1 share | ceiling | batch N share | ceiling |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        one, many = r["deployable_share"]["1"], r["deployable_share"][str(r["batch"])]
        lines.append(f"| {r['label']} | {one['share']:.2f} | {one['ceiling']:.2f}x | {many['share']:.2f} "
                     f"(B={r['batch']}) | {many['ceiling']:.2f}x |")
    sweep = result["rate_sweep"]
    lines += ["", f"One layer ({sweep['layer']}), deployed ternary vs fp32 dense, ms (speed-up):", "",
              "| input firing rate | " + " | ".join(f"{round(100 * r)} %" for r in sweep["rates"]) + " |",
              "|---|" + "---|" * len(sweep["rates"])]
    for batch in sorted({p["batch"] for p in sweep["points"]}):
        pts = [p for p in sweep["points"] if p["batch"] == batch]
        lines.append(f"| batch {batch} | " + " | ".join(
            f"{p['ternary_ms']['median']:.2f} vs {p['fp32_ms']['median']:.2f} ({p['speedup']:.2f}x)" for p in pts)
            + " |")
    return lines
