"""Where the time goes: torch.profiler tables for the networks and models of `speed.py`.

    .venv/bin/python benchmarks/profile_speed.py conv-16-32 --framework spikingjelly --mode train
    .venv/bin/python benchmarks/profile_speed.py mlp-784-800-10 --layout default --threads 2
    .venv/bin/python benchmarks/profile_speed.py qat:sew-resnet           # fp32 and tawq QAT steps
    .venv/bin/python benchmarks/profile_speed.py conv:plain-grouped-loop  # the temporal conv three ways

Prints the operators sorted by self CPU time (numba kernels show up as time inside the neuron's
autograd nodes, ``_MultiStep`` / ``_MultiStepBackward``, or ``CalciumQuantCPU``), and the share of
the total that dense layers (matmul, convolution) take. The last form times a quantized layer's
per-timestep convolution as one grouped call (what `tawq_core.QuantConv2d` does) against a loop of T
convolutions and against the plain fp32 convolution, forward + backward.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import speed_frameworks
import speed_quant
import torch
import torch.nn.functional as F
from speed_nets import NETS, build
from torch.profiler import ProfilerActivity, profile

import tawq_core

DENSE = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
         "aten::convolution_backward")


def _profile(step, rounds: int, rows: int, label: str) -> None:
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    dense = sum(e.self_cpu_time_total for e in events if e.key in DENSE)
    print(f"== {label}: {total / rounds / 1e3:.2f} ms of self CPU time per step, "
          f"{100 * dense / max(total, 1):.0f} % in matmul/convolution")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))


def framework_net(args: argparse.Namespace) -> None:
    spec = next(s for s in NETS if s.name == args.target)
    x, y = speed_frameworks.make_input(spec, args.layout)
    net = build(args.framework, spec)
    if args.layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
    train, infer = speed_frameworks._steps(args.framework, net, x, y)
    for mode, step in (("train", train), ("infer", infer)):
        if args.mode in (mode, "both"):
            _profile(step, args.rounds, args.rows, f"{args.framework} {spec.name} {args.layout} {mode}")


def qat_model(args: argparse.Namespace) -> None:
    spec = next(m for m in speed_quant.MODELS if m.name == args.target.split(":", 1)[1])
    fp32 = spec.build()
    quantized = copy.deepcopy(fp32)
    tawq_core.quantize(quantized, "tawq", timesteps=speed_quant.T)
    x, y = speed_quant._data(spec, spec.batch)
    for label, net in (("fp32", fp32), ("tawq", quantized)):
        _profile(speed_quant._train_step(net, x, y), args.rounds, args.rows, f"{spec.label} {label} train step")


def _ms(fn, rounds: int) -> float:
    for _ in range(2):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _conv_case(ci: int, co: int, size: int, k: int, rounds: int) -> list[float]:
    """Forward + backward ms of one temporal conv: plain fp32, one grouped call, a loop of T convs."""
    T, B = speed_quant.T, 32
    x = (torch.rand(T * B, ci, size, size) < 0.3).float().requires_grad_()
    w = (0.1 * torch.randn(co, ci, k, k)).requires_grad_()
    wt = (0.1 * torch.randn(T, co, ci, k, k)).requires_grad_()
    grad = torch.randn(T * B, co, size, size)
    pad = k // 2

    def plain():
        F.conv2d(x, w, padding=pad).backward(grad)

    def grouped():
        folded = x.reshape(T, B, ci, size, size).transpose(0, 1).reshape(B, T * ci, size, size)
        y = F.conv2d(folded, wt.reshape(T * co, ci, k, k), padding=pad, groups=T)
        y.reshape(B, T, co, size, size).transpose(0, 1).reshape(T * B, co, size, size).backward(grad)

    def loop():
        torch.cat([F.conv2d(xs, wt[t], padding=pad) for t, xs in enumerate(x.split(B))]).backward(grad)

    return [_ms(fn, rounds) for fn in (plain, grouped, loop)]


def temporal_conv(args: argparse.Namespace) -> None:
    print("| conv (Ci -> Co, HxW, k), T = 4, B = 32 | plain fp32 ms | one grouped call ms | loop of T convs ms |")
    print("|---|---|---|---|")
    for ci, co, size, k in ((32, 64, 16, 3), (64, 256, 8, 1), (256, 64, 8, 1), (64, 64, 8, 3)):
        times = _conv_case(ci, co, size, k, args.rounds)
        print(f"| {ci} -> {co}, {size}x{size}, {k}x{k} | " + " | ".join(f"{t:.2f}" for t in times) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target", help="a network of speed.py, qat:<model> (sew-resnet, spikingformer) or "
                                  "conv:plain-grouped-loop")
    p.add_argument("--framework", default="tawq", choices=["tawq", "spikingjelly", "snntorch"])
    p.add_argument("--layout", default=None, choices=["default", "nchw", "channels_last"])
    p.add_argument("--mode", default="both", choices=["train", "infer", "both"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--rows", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.target.startswith("qat:"):
        qat_model(args)
    elif args.target.startswith("conv:"):
        temporal_conv(args)
    else:
        args.layout = args.layout or ("nchw" if args.target.startswith("conv") else "default")
        framework_net(args)


if __name__ == "__main__":
    main()
