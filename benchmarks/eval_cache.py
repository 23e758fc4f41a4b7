"""What the eval-mode effective-weight cache of quantized layers saves, and what its key costs (#13).

In eval mode without autograd, a quantized layer computes its effective weights once and reuses them
while its cache key holds. The key includes a checksum of the weight and quantizer-state values
(`tawq_core.nn.layers.fingerprint`), because in-place ``.data`` edits bump no version counter. Measured in
one run, timed in turns (`speed_timing.interleaved`): an eval forward with the cache, the same forward
recomputing the weights every call, the weights alone (every quantized layer's quantizer), and the
cache key alone (what every cached forward pays). The figures to read are the two ratios.

    python benchmarks/eval_cache.py [--repeats 5]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from speed_timing import interleaved, load_average, machine, ratio, summary

import tawq_core

T = 4
MODELS = (  # (label, model plugin, options, sample shape, batch)
    ("MLP 784-256-256-10", "mlp", {"hidden": (256, 256)}, (1, 28, 28), 64),
    ("SEW-ResNet (defaults), 3x32x32", "sew-resnet", {}, (3, 32, 32), 16),
)


def measure(name: str, options: dict[str, Any], sample: tuple[int, ...], batch: int, warmup: int,
            repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = tawq_core.create("model", name, num_classes=10, sample_shape=sample, **options)
    tawq_core.quantize(model, "tawq", T)
    model.eval()
    layers = [layer for _, layer in tawq_core.quantized_layers(model)]
    x = (torch.rand(T, batch, *sample) < 0.2).float()

    def recomputed() -> None:
        for layer in layers:
            layer.effective_weight = layer._compute  # instance attribute: bypasses the cache
        try:
            model(x)
        finally:
            for layer in layers:
                del layer.effective_weight

    with torch.no_grad():
        ms = interleaved({"cached": lambda: model(x), "recomputed": recomputed,
                          "weights": lambda: [layer._compute() for layer in layers],
                          "key": lambda: [layer._cache_key() for layer in layers]}, warmup, repeats)
    stats = {case: summary(values) for case, values in ms.items()}
    return {"params": sum(layer.weight.numel() for layer in layers), "ms": stats,
            "cache_speedup": ratio(stats["recomputed"], stats["cached"]),
            "key_fraction_of_weights": round(stats["key"]["median"] / stats["weights"]["median"], 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    facts = machine(args.threads)
    print(f"machine: {facts['cpu']}, {facts['usable_cpus']} usable CPUs, torch {facts['versions']['torch']}, "
          f"commit {facts['commit']}; load before: {load_average()}; tawq T={T}, {args.threads} thread(s)\n")
    print("| model | quantized weights | forward cached ms | forward recomputed ms | cache speed-up | "
          "weights() ms | cache key ms | key / weights() |")
    print("|---|---|---|---|---|---|---|---|")
    for label, name, options, sample, batch in MODELS:
        r = measure(name, options, sample, batch, args.warmup, args.repeats)
        m = r["ms"]
        print(f"| {label}, batch {batch} | {r['params']:,} | {m['cached']['median']:.1f} | "
              f"{m['recomputed']['median']:.1f} | {r['cache_speedup']}x | {m['weights']['median']:.1f} | "
              f"{m['key']['median']:.2f} | {100 * r['key_fraction_of_weights']:.1f}% |")
    print(f"\nload after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
