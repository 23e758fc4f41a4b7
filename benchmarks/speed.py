"""Speed of tawq on CPU: against spikingjelly and snntorch, TaWQ's training overhead, packed inference.

    .venv/bin/python benchmarks/speed.py --json speed.json          # everything (parts 1-3 ~2 min; deploy 8-11 min)
    .venv/bin/python benchmarks/speed.py --parts frameworks         # one part: frameworks, qat, packed, deploy
    .venv/bin/python benchmarks/speed.py --quick --json /tmp/s.json # smoke run: few repeats

Part 1 (`speed_frameworks`): tawq's fp32 multi-step networks vs spikingjelly 2.0 (multi-step) and
snntorch 1.0 on identical networks (MLP 784-800-10, MLP 64-256-256-10, conv net), T = 4, train step
and inference. Part 2 (`speed_quant`): tawq QAT step / fp32 step on a tiny SEW-ResNet and
Spikingformer. Part 3: latency and weight memory of models loaded from packed files (tawq, ptq8)
vs fp32. Part 4 (`speed_deploy`): deployed inference (packed weights on tawq's kernels) for every
quantizer vs torch's dense fp32 eval and the fp32 spike-driven form, on four networks, resident bytes
cross-checked by RSS, and one layer's time vs input firing rate. Every figure is a median of
`--repeats` samples after `--warmup` rounds, and every ratio
compares cases timed in turns within this run (`speed_timing.interleaved`). The machine (CPU,
threads, versions) and the load average before and after go into the JSON: on a shared machine the
load says how far to trust the absolute numbers; the ratios are what the run is for.

spikingjelly and snntorch are optional (``pip install --no-deps spikingjelly loguru snntorch``);
a missing one is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import speed_deploy
import speed_frameworks
import speed_quant
import torch
from speed_timing import ROOT, load_average, machine

PARTS = ("frameworks", "qat", "packed", "deploy")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write every figure and the machine facts to this file")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=int, default=20, help="timed samples per case (default 20)")
    p.add_argument("--warmup", type=int, default=4, help="untimed rounds first (default 4)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    p.add_argument("--nets", nargs="+", choices=[n.name for n in speed_frameworks.NETS],
                   help="part 1: only these networks")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 repeats, 1 warm-up round (deploy: small nets)")
    p.add_argument("--cache", type=Path, default=ROOT / "results",
                   help="deploy: folder caching the trained MNIST-1D model under speed-deploy/ (default results/)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 3, 1
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("--threads and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"machine": machine(args.threads), "load_average_before": load_average(),
                              "settings": {"threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
                                           "timesteps": speed_frameworks.T, "quick": args.quick}}
    started = time.perf_counter()
    lines: list[str] = []
    if "frameworks" in args.parts:
        part = speed_frameworks.run(args.warmup, args.repeats, args.nets)
        result["frameworks"] = part
        lines += ["## tawq vs spikingjelly vs snntorch (fp32, CPU, ms per batch, median)", "",
                  *speed_frameworks.table(part), ""]
        lines += [f"unavailable: {fw}: {why}" for fw, why in part["unavailable"].items()]
    if "qat" in args.parts:
        result["qat"] = speed_quant.qat_overhead(args.warmup, args.repeats)
        lines += ["## TaWQ training overhead (step time, same run)", "", *speed_quant.qat_table(result["qat"]), ""]
    if "packed" in args.parts:
        result["packed"] = speed_quant.packed_inference(args.warmup, args.repeats)
        lines += ["## Inference from packed files (eval, inference_mode)", "",
                  *speed_quant.packed_table(result["packed"]), ""]
    if "deploy" in args.parts:
        part_started = time.perf_counter()
        result["deploy"] = speed_deploy.run(args.warmup, args.repeats, args.quick, args.cache,
                                            log=lambda line: print(line, file=sys.stderr))
        result["deploy"]["elapsed_s"] = round(time.perf_counter() - part_started, 1)
        lines += ["## Deployed inference vs fp32 (eval, inference_mode)", "", *speed_deploy.table(result["deploy"]),
                  ""]
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["load_average_after"] = load_average()
    m = result["machine"]
    lines.insert(0, f"{m['cpu']}, {m['usable_cpus']} CPUs, {args.threads} threads, torch {m['versions']['torch']}, "
                    f"load average before {result['load_average_before']} after {result['load_average_after']}, "
                    f"{result['elapsed_s']} s\n")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
