"""Part 1: tawq vs spikingjelly 2.0 vs snntorch 1.0 on identical fp32 networks (train step and inference).

* Train step = what a training loop does per batch: ``zero_grad(set_to_none=True)``, spikingjelly's
  ``functional.reset_net`` (its users call it before every batch), forward, cross-entropy of the
  time-averaged output spikes, backward, and a plain SGD step.
* Inference = ``net.eval()``, ``reset_net`` for spikingjelly, and the forward under
  ``torch.inference_mode()``, for every framework alike.
* Inputs: the MNIST-sized MLP reads rate-coded spikes (Bernoulli(0.2) per pixel and step), the small MLP
  and the conv net read an analog sample repeated over T (direct encoding), the same tensor for all.
* The conv net runs twice: in the default (NCHW) layout and in channels-last (model and input
  converted with ``.to(memory_format=torch.channels_last)``), for every framework; each framework is
  compared layout by layout.
* tawq and spikingjelly compute the same function: the harness checks that their output spikes are
  identical on the benchmark batch (``outputs_equal_spikingjelly``); snntorch computes it up to rounding
  (``output_agreement_snntorch``: the fraction of equal output spikes; see `speed_nets`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from speed_nets import BUILDERS, NETS, NetSpec, build, reset_hook
from speed_timing import interleaved, ratio, summary
from torch import Tensor, nn

import tawq_core

T = 4
LAYOUTS = {"conv": ("nchw", "channels_last"), "mlp": ("default",)}
TARGETS = {"train": 1.5, "infer": 2.0}  # tawq's speed-up over spikingjelly the issue asks for


def available() -> dict[str, str]:
    """Framework -> '' if it imports, else why not (reported, never fatal)."""
    found = {}
    for name, module in (("tawq", "tawq_core"), ("spikingjelly", "spikingjelly.activation_based.neuron"),
                         ("snntorch", "snntorch")):
        try:
            __import__(module)
            found[name] = ""
        except Exception as exc:  # a missing optional framework is a row marked unavailable
            found[name] = f"{type(exc).__name__}: {exc}"
    return found


def _neuron_kernel() -> str:
    """Which implementation tawq's LIF runs on these CPU tensors (fused numba kernel or eager loop)."""
    from tawq_plugins.neurons import dynamics

    lif = tawq_core.create("neuron", "lif")
    kernels = dynamics._kernels(lif.dynamics, torch.zeros(2, 2))
    return "eager loop" if kernels is dynamics.EAGER else f"fused ({kernels.run.__module__})"


def make_input(spec: NetSpec, layout: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    if spec.name.startswith("mlp-784"):
        x = (torch.rand(T, spec.batch, *spec.sample, generator=gen) < 0.2).float()
    else:
        sample = torch.rand(spec.batch, *spec.sample, generator=gen) * 2.0
        x = sample.unsqueeze(0).repeat(T, *([1] * sample.dim()))
    if layout == "channels_last":
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    y = torch.randint(0, 10, (spec.batch,), generator=gen)
    return x, y


def _steps(framework: str, net: nn.Module, x: Tensor, y: Tensor) -> tuple[Callable[[], Any], Callable[[], Tensor]]:
    reset = reset_hook(framework)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def train() -> None:
        net.train()
        opt.zero_grad(set_to_none=True)
        reset(net)
        loss = F.cross_entropy(net(x).mean(0), y)
        loss.backward()
        opt.step()

    def infer() -> Tensor:
        net.eval()
        with torch.inference_mode():
            reset(net)
            return net(x)

    return train, infer


def measure_net(spec: NetSpec, layout: str, frameworks: list[str], warmup: int, repeats: int) -> dict[str, Any]:
    """One network in one layout: medians per framework and mode, ratios against tawq."""
    x, y = make_input(spec, layout)
    cases: dict[str, Callable[[], Any]] = {}
    first_outputs: dict[str, Tensor] = {}
    for fw in frameworks:
        net = build(fw, spec)
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
        train, infer = _steps(fw, net, x, y)
        first_outputs[fw] = infer().clone()  # before any training step: every framework has the same weights
        cases[f"{fw}:train"], cases[f"{fw}:infer"] = train, infer
    samples = interleaved(cases, warmup, repeats)
    row: dict[str, Any] = {"net": spec.name, "layout": layout, "batch": spec.batch, "timesteps": T,
                           "input_shape": list(x.shape), "ms": {}, "spike_rate": {}}
    for fw in frameworks:
        row["ms"][fw] = {mode: summary(samples[f"{fw}:{mode}"]) for mode in ("train", "infer")}
        row["spike_rate"][fw] = round(first_outputs[fw].float().mean().item(), 4)
    if "tawq" in frameworks and "spikingjelly" in frameworks:
        row["outputs_equal_spikingjelly"] = bool(torch.equal(first_outputs["tawq"], first_outputs["spikingjelly"]))
    if "tawq" in frameworks and "snntorch" in frameworks:
        same = (first_outputs["tawq"] == first_outputs["snntorch"]).float().mean().item()
        row["output_agreement_snntorch"] = round(same, 4)
    row["speedup"] = {
        other: {mode: ratio(row["ms"][other][mode], row["ms"]["tawq"][mode]) for mode in ("train", "infer")}
        for other in frameworks if other != "tawq" and "tawq" in frameworks
    }
    return row


def run(warmup: int, repeats: int, nets: list[str] | None = None) -> dict[str, Any]:
    found = available()
    frameworks = [fw for fw in BUILDERS if not found[fw]]
    rows = []
    for spec in NETS:
        if nets and spec.name not in nets:
            continue
        for layout in LAYOUTS["conv" if spec.name.startswith("conv") else "mlp"]:
            rows.append(measure_net(spec, layout, frameworks, warmup, repeats))
    return {"unavailable": {fw: why for fw, why in found.items() if why}, "rows": rows,
            "tawq_neuron_kernel": _neuron_kernel(),
            "targets_vs_spikingjelly": TARGETS, "train_step": "zero_grad + reset_net (spikingjelly) + forward + "
            "cross-entropy + backward + SGD step", "inference": "eval + torch.inference_mode forward"}


def table(part: dict[str, Any]) -> list[str]:
    """Markdown table: ms per framework and tawq's speed-up, per net and mode."""
    lines = ["| net | layout | mode | tawq ms | spikingjelly ms | snntorch ms | vs spikingjelly | vs snntorch | "
             "target |", "|---|---|---|---|---|---|---|---|---|"]
    for row in part["rows"]:
        for mode in ("train", "infer"):
            ms = [row["ms"].get(fw, {}).get(mode) for fw in ("tawq", "spikingjelly", "snntorch")]
            cells = [f"{m['median']:.2f}" if m else "n/a" for m in ms]
            sj = row["speedup"].get("spikingjelly", {}).get(mode)
            snn = row["speedup"].get("snntorch", {}).get(mode)
            target = TARGETS[mode]
            met = "n/a" if sj is None else ("met" if sj >= target else "missed")
            lines.append(f"| {row['net']} | {row['layout']} | {mode} | {' | '.join(cells)} | "
                         f"{_x(sj)} | {_x(snn)} | {target}x {met} |")
    return lines


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
