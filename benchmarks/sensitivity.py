"""Per-layer sensitivity: quantize ONE layer at a time, fine-tune briefly, report each layer's accuracy drop.

Which layers to keep at higher precision (a `QuantPolicy(layer_quantizers=...)` or a bench ``[mixed.<row>]``)
is a question of where the accuracy goes. For each layer the preset's policy would quantize, a copy of the
preset's fp32 model (trained exactly as the bench trains it, `qat_search.fp32_model`) gets only that layer
quantized, is fine-tuned for a short, stated budget (``--epochs``, default 1, with the preset's [qat]
recipe otherwise, distillation included), and is scored; the row "all layers" quantizes every layer with
the same budget for comparison. Scored on the validation split by default (this informs a choice), or
``--heldout test``.

    nice -n 10 .venv/bin/python benchmarks/sensitivity.py --quantizer tawq --seeds 0 --out results/sensitivity
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from qat_search import fp32_model

import tawq_core
from tawq_core import quantize
from tawq_core.bench import cells, load_preset
from tawq_core.files import write_json_atomic
from tawq_core.training.loop import TrainConfig, evaluate, train

ALL = "all layers"


def layers_of(cfg: Any, splits: Any, quantizer: str) -> list[str]:
    """The layer names the preset's policy quantizes, in module order."""
    model = cells.build_model(cfg, splits)
    return [s.name for s in quantize(model, quantizer, cfg.timesteps, cfg.quant_policy()).swapped]


def one_run(cfg: Any, splits: Any, teacher: torch.nn.Module, seed: int, quantizer: str, layer: str,
            epochs: int) -> dict[str, Any]:
    model = copy.deepcopy(teacher)
    policy = cfg.quant_policy()
    if layer != ALL:
        policy = dataclasses.replace(policy, include=(layer,))
    report = quantize(model, cells.new_quantizer(cfg, quantizer), cfg.timesteps, policy)
    qat = cfg.train_config(seed, qat=True)  # the preset's recipe, its warm-up scaled to the shorter budget
    tc = TrainConfig.from_dict({**qat.to_dict(), "epochs": epochs,
                                "warmup_epochs": qat.warmup_epochs * epochs / qat.epochs})
    started = time.perf_counter()
    train(model, splits, tc, progress=False, teacher=teacher if tc.distill else None)
    return {"layer": layer, "seed": seed, "params": report.params_quantized,
            "accuracy": evaluate(model, splits.test, splits, cfg.timesteps), "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--quantizer", default="tawq")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per run (the stated budget)")
    parser.add_argument("--heldout", choices=("validation", "test"), default="validation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/sensitivity")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_preset(args.preset)
    options = {**cfg.dataset_options, **({"heldout": args.heldout} if cfg.dataset == "mnist1d" else {})}
    if args.heldout == "validation" and cfg.dataset != "mnist1d":
        raise SystemExit(f"--heldout validation needs a dataset with a validation split (mnist1d), not {cfg.dataset}")
    splits = tawq_core.create("dataset", cfg.dataset, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, fp32 = [], {}
    names = layers_of(cfg, splits, args.quantizer)
    for seed in (int(s) for s in args.seeds.split(",")):
        teacher = fp32_model(cfg, splits, seed, out)
        fp32[seed] = evaluate(teacher, splits.test, splits, cfg.timesteps)
        for layer in [*names, ALL]:
            rows.append(one_run(cfg, splits, teacher, seed, args.quantizer, layer, args.epochs))
            r = rows[-1]
            print(f"seed {seed} {layer}: {100 * r['accuracy']:.2f} (fp32 {100 * fp32[seed]:.2f}), {r['seconds']:.0f} s",
                  file=sys.stderr, flush=True)
    tc = cfg.train_config(0, qat=True)
    lines = [f"{args.quantizer} one layer at a time, {args.epochs} fine-tuning epoch(s) each (lr {tc.lr:g}, batch "
             f"{tc.batch_size}, distill {tc.distill}); preset {args.preset}; {args.heldout} split "
             f"({len(splits.test)} samples); seeds {args.seeds}", "",
             "| layer | weights | accuracy % (mean) | drop vs fp32 pp (mean) | per seed |", "|---|---|---|---|---|"]
    for layer in [*names, ALL]:
        mine = [r for r in rows if r["layer"] == layer]
        drops = [100 * (r["accuracy"] - fp32[r["seed"]]) for r in mine]
        lines.append(f"| {layer} | {mine[0]['params']:,} | {100 * statistics.fmean(r['accuracy'] for r in mine):.2f} "
                     f"| {statistics.fmean(drops):+.2f} | {', '.join(f'{d:+.2f}' for d in drops)} |")
    table = "\n".join(lines)
    print(table)
    record = {"args": vars(args), "fp32": fp32, "rows": rows, "markdown": table}
    write_json_atomic(out / "sensitivity.json", record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
