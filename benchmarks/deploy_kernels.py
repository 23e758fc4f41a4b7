"""Deployed kernels one layer at a time: each weight form against torch's fp32 layer, same run, same input.

For a few layers shaped like the benchmark nets' (SEW-ResNet MNIST-1D convs, SEW-ResNet-18 3x3 convs,
Spikingformer-4-384 1x1 projections, an MLP linear), with spike input at a given firing rate, T = 4:
torch fp32 (``F.conv``/``F.linear`` on ``[T·B, ...]``, the reference), the fp32 spike-driven row, and every
quantizer deployed from its packed weights (bit-plane layout, and the int8 layout where it differs).
Times are the minimum over interleaved repeats (the least disturbed by other load on the machine),
reported as speed-ups over fp32; the machine, threads and load average are printed with them.

    python benchmarks/deploy_kernels.py [--threads 2] [--rate 0.1] [--batches 1 16] [--repeats 30]
"""

from __future__ import annotations

import argparse

import torch
from speed_timing import interleaved, machine
from torch import nn

from tawq_core import create
from tawq_core.deploy import DeployedLayer, WeightLayout, deploy_packed_layer
from tawq_core.deploy.forms import SpikeColumns
from tawq_core.deploy.geometry import Geometry

T = 4
LAYERS = {
    "mnist1d conv1d 48->48 k3 L40": (lambda: nn.Conv1d(48, 48, 3, 1, 1, bias=False), (48, 40)),
    "mnist1d conv1d 48->96 k3 s2 L40": (lambda: nn.Conv1d(48, 96, 3, 2, 1, bias=False), (48, 40)),
    "resnet18 conv2d 64->64 3x3 32x32": (lambda: nn.Conv2d(64, 64, 3, 1, 1, bias=False), (64, 32, 32)),
    "resnet18 conv2d 256->256 3x3 8x8": (lambda: nn.Conv2d(256, 256, 3, 1, 1, bias=False), (256, 8, 8)),
    "spikingformer conv1d 384->384 1x1 N64": (lambda: nn.Conv1d(384, 384, 1), (384, 64)),
    "mlp linear 784->800": (lambda: nn.Linear(784, 800), (784,)),
}
QUANTIZERS = ("tawq", "ternary", "binary", "ptq8")


def _cases(layer: nn.Module, x: torch.Tensor) -> dict[str, object]:
    cases = {"fp32": lambda: layer(x)}
    driven = DeployedLayer.like(layer, SpikeColumns(layer.weight, Geometry.of(layer)), 1, "fp32")
    cases["fp32 spike-driven"] = lambda: driven(x)
    for name in QUANTIZERS:
        quantizer = create("quantizer", name)
        packed = quantizer.pack(layer.weight, T)
        layouts = (WeightLayout.BITPLANES, WeightLayout.INT8) if name != "ptq8" else (WeightLayout.BITPLANES,)
        for layout in layouts:
            deployed = deploy_packed_layer(layer, packed, quantizer, layout=layout)
            label = name if layout is WeightLayout.BITPLANES else f"{name}/int8"
            if quantizer.temporal:  # a lone temporal layer takes [T, B, ...]
                cases[label] = lambda d=deployed: d(x.reshape(T, -1, *x.shape[1:]))
            else:
                cases[label] = lambda d=deployed: d(x)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.1, help="input firing rate")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine(args.threads))
    for batch in args.batches:
        for label, (make, sample) in LAYERS.items():
            layer = make().eval()
            x = (torch.rand(T * batch, *sample) < args.rate).float()
            with torch.inference_mode():
                samples = interleaved(_cases(layer, x), warmup=3, repeats=args.repeats)
            best = {name: min(ms) for name, ms in samples.items()}
            ratios = "  ".join(f"{name} {best['fp32'] / ms:5.2f}x" for name, ms in best.items() if name != "fp32")
            print(f"B={batch:<3d} {label:<40s} fp32 {best['fp32']:8.3f} ms  {ratios}", flush=True)


if __name__ == "__main__":
    main()
