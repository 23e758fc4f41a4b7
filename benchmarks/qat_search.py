"""Choose the default preset's QAT recipe on the validation split, never on the test split.

For each seed the preset's fp32 model is trained exactly as the bench trains it (same data, recipe,
seed); every candidate recipe then fine-tunes a tawq copy of it, and is scored on the mnist1d
validation split (10,000 generated samples of its own, `heldout="validation"`), which neither
training nor the reported test accuracy uses. The recipe with the best median drop vs fp32
on validation wins (ties: the cheaper one). Every finished fine-tune is appended to a JSON-lines log,
so an interrupted search resumes; the summary is printed as Markdown (committed as docs/qat-search.md).

    nice -n 10 .venv/bin/python benchmarks/qat_search.py --seeds 0,1 --out results/qat-search
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import tawq_core
from tawq_core.bench import cells, load_preset
from tawq_core.files import atomic_path
from tawq_core.training.loop import TrainConfig, evaluate, seed_everything, train

#: Candidate [qat] sections: a small grid over length, learning rate and distillation.
CANDIDATES: dict[str, dict[str, Any]] = {
    "e4": {"epochs": 4, "lr": 1e-3},
    "e4-kd": {"epochs": 4, "lr": 1e-3, "distill": True, "distill_weight": 0.5, "distill_temperature": 2.0},
    "e8": {"epochs": 8, "lr": 1e-3},
    "e8-kd": {"epochs": 8, "lr": 1e-3, "distill": True, "distill_weight": 0.5, "distill_temperature": 2.0},
    "e8-lr2e-3-kd": {"epochs": 8, "lr": 2e-3, "distill": True, "distill_weight": 0.5, "distill_temperature": 2.0},
    "e8-kd0.9": {"epochs": 8, "lr": 1e-3, "distill": True, "distill_weight": 0.9, "distill_temperature": 4.0},
    "e8-lr3e-3-kd": {"epochs": 8, "lr": 3e-3, "distill": True, "distill_weight": 0.5, "distill_temperature": 2.0},
}


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fp32_model(cfg: Any, splits: Any, seed: int, out: Path) -> torch.nn.Module:
    """The bench's fp32 model of `seed`, trained once and kept as a state dict in `out`."""
    seed_everything(seed)
    model = cells.build_model(cfg, splits)
    path = out / f"fp32-seed{seed}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    started = time.perf_counter()
    train(model, splits, cfg.train_config(seed), progress=False)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    _log(f"seed {seed}: fp32 trained in {time.perf_counter() - started:.0f} s")
    return model.eval()


def fine_tune(cfg: Any, splits: Any, teacher: torch.nn.Module, seed: int, qat: dict[str, Any],
              quantizer: str) -> dict[str, Any]:
    model = copy.deepcopy(teacher)
    cells.apply_quantizer(model, cfg, quantizer)
    tc = TrainConfig.from_dict({**cfg.train_config(seed, qat=True).to_dict(), **qat})
    started = time.perf_counter()
    train(model, splits, tc, progress=False, teacher=teacher if tc.distill else None)
    return {"val": evaluate(model, splits.test, splits, cfg.timesteps), "seconds": time.perf_counter() - started}


def summarize(rows: list[dict[str, Any]], names: list[str]) -> tuple[str, str | None]:
    lines = ["| recipe | [qat] | seeds | val drop vs fp32 pp (median) | per seed | fine-tune s (mean) |",
             "|---|---|---|---|---|---|"]
    scored = []
    for name in names:
        mine = sorted((r for r in rows if r["recipe"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        drops = [100 * (r["val"] - r["fp32_val"]) for r in mine]
        median = statistics.median(drops)
        scored.append((median, -CANDIDATES[name]["epochs"], name))
        lines.append(f"| {name} | `{json.dumps(CANDIDATES[name])}` | {','.join(str(r['seed']) for r in mine)} | "
                     f"{median:+.2f} | {', '.join(f'{d:+.1f}' for d in drops)} | "
                     f"{statistics.fmean(r['seconds'] for r in mine):.0f} |")
    best = max(scored)[2] if scored else None
    return "\n".join(lines), best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--quantizer", default="tawq")
    parser.add_argument("--recipes", default=",".join(CANDIDATES), help="names from CANDIDATES")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/qat-search")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_preset(args.preset)
    splits = tawq_core.create("dataset", cfg.dataset, heldout="validation", **cfg.dataset_options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "runs.jsonl"
    rows = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.is_file() else []
    names = args.recipes.split(",")
    for seed in (int(s) for s in args.seeds.split(",")):
        teacher = fp32_model(cfg, splits, seed, out)
        fp32_val = evaluate(teacher, splits.test, splits, cfg.timesteps)
        for name in names:
            if any(r["recipe"] == name and r["seed"] == seed and r["quantizer"] == args.quantizer for r in rows):
                continue
            result = fine_tune(cfg, splits, teacher, seed, CANDIDATES[name], args.quantizer)
            row = {"recipe": name, "seed": seed, "quantizer": args.quantizer, "fp32_val": fp32_val, **result}
            rows.append(row)
            with log_path.open("a") as handle:  # one line per finished run: a crash loses nothing finished
                handle.write(json.dumps(row) + "\n")
            _log(f"seed {seed} {name}: val {100 * row['val']:.1f} (fp32 {100 * fp32_val:.1f}), {row['seconds']:.0f} s")
    table, best = summarize([r for r in rows if r["quantizer"] == args.quantizer], names)
    print(table)
    print(f"\nbest on validation: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
