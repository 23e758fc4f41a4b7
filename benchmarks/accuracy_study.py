"""Accuracy study: fp32 vs tawq, ptq8, binary and static ternary weights, trained from scratch or fine-tuned.

Two tasks that need no downloaded files: MNIST-1D with a small 1-D SEW-ResNet, and the UCI 8x8 digits
with a spiking MLP, both at T = 4. For every seed: fp32 is trained; ptq8 quantizes that fp32 model
(no retraining); each QAT quantizer is trained the ways --inits asks for: from scratch (what the
reference code does), fine-tuned from the fp32 checkpoint of the same seed, and fine-tuned with
distillation from that fp32 model (``finetune-kd``: `TrainConfig(distill=True)`, weight and
temperature from --distill-weight / --distill-temperature), every QAT quantizer with the same recipe.
A tenth of the training set is held out as a validation split (the same split for every run of a
seed); the default way to train each quantizer is chosen on validation accuracy, never on the test
set. The test accuracy is reported once per run, with the weights the run ended with. Every model is
produced by `tawq_core.pipeline` (as in `tawq train` and the bench); PTQ calibrates on 8 training batches.

    .venv/bin/python benchmarks/accuracy_study.py                       # small scale, 2 processes
    .venv/bin/python benchmarks/accuracy_study.py --scale full --jobs 14   # the longer recipe
    .venv/bin/python benchmarks/accuracy_study.py --quick                 # smoke test: 1 seed, 1 epoch
    .venv/bin/python benchmarks/accuracy_study.py --inits finetune,finetune-kd   # with and without distillation

Prints one Markdown table per task and writes every run and the summary to JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

import tawq_core
from tawq_core import TrainConfig, evaluate, quantized_layers
from tawq_core.pipeline import (
    Calibration,
    Data,
    ModelSpec,
    QatInit,
    QuantSpec,
    Recipe,
    Runtime,
    evaluate_model,
    produce,
)

VAL_FRACTION = 0.1
FINETUNES = ("finetune", "finetune-kd")  # both start from the fp32 checkpoint of the same seed


@dataclass(frozen=True)
class Task:
    dataset: str
    model: str
    model_options: dict[str, Any]
    epochs: int  # fp32 and from-scratch QAT
    batch_size: int
    lr: float
    finetune_epochs: int
    finetune_lr: float
    timesteps: int = 4


SCALES: dict[str, dict[str, Task]] = {
    # a few minutes on 2 CPU cores (--jobs 2)
    "small": {
        "mnist1d": Task("mnist1d", "sew-resnet", {"layers": (1, 1), "width": 32}, epochs=10, batch_size=64,
                        lr=2e-3, finetune_epochs=5, finetune_lr=1e-3),
        "digits": Task("digits", "mlp", {"hidden": (128, 128)}, epochs=20, batch_size=32, lr=2e-3,
                       finetune_epochs=10, finetune_lr=1e-3),
    },
    # the same networks closer to convergence; meant for a many-core machine (--jobs 14)
    "full": {
        "mnist1d": Task("mnist1d", "sew-resnet", {"layers": (1, 1), "width": 32}, epochs=40, batch_size=64,
                        lr=2e-3, finetune_epochs=20, finetune_lr=1e-3),
        "digits": Task("digits", "mlp", {"hidden": (128, 128)}, epochs=60, batch_size=32, lr=2e-3,
                       finetune_epochs=30, finetune_lr=1e-3),
    },
}


@dataclass(frozen=True)
class Run:
    task: str
    seed: int
    quantizer: str
    init: str  # "fp32" (the reference itself), "scratch", "finetune" / "finetune-kd" (from fp32), "ptq"


@dataclass
class Outcome:
    run: Run
    test_accuracy: float
    val_accuracy: float
    bits_per_weight: float
    bits_per_weight_total: float
    params_quantized: int
    fraction_quantized: float
    train_seconds: float
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)


_SPLITS: dict[str, Any] = {}


def _splits(name: str) -> Any:
    if name not in _SPLITS:
        _SPLITS[name] = tawq_core.create("dataset", name)
    return _SPLITS[name]


def storage_bits(model: torch.nn.Module) -> tuple[float, float]:
    """Bits per weight over the quantized layers, measured from the packed bytes (codes, codes+scales)."""
    payload = total = weights = 0
    for _, layer in quantized_layers(model):
        packed = layer.pack()
        payload, total, weights = payload + packed.payload_bytes, total + packed.nbytes, weights + packed.numel
    return (8 * payload / weights, 8 * total / weights) if weights else (32.0, 32.0)


def execute(task: Task, run: Run, device: str, fp32_state: dict[str, torch.Tensor] | None,
            distill: tuple[float, float] = (0.5, 2.0)) -> Outcome:
    """One cell of the study through `tawq_core.pipeline`, in whichever process runs it (single-threaded:
    jobs give parallelism). PTQ and fine-tuning start from the fp32 state of the same seed (`fp32_state`)."""
    torch.set_num_threads(1)
    splits = _splits(task.dataset)
    spec = ModelSpec(task.model, {"num_classes": splits.num_classes, "sample_shape": splits.sample_shape,
                                  **task.model_options})

    def fp32_model() -> torch.nn.Module:  # the reference (and distillation teacher): the trained fp32 weights
        net = tawq_core.create("model", spec.name, **spec.options)
        net.load_state_dict(fp32_state)
        return net

    finetune, kd = run.init in FINETUNES, run.init == "finetune-kd"
    config = TrainConfig(epochs=task.finetune_epochs if finetune else task.epochs, batch_size=task.batch_size,
                         lr=task.finetune_lr if finetune else task.lr, timesteps=task.timesteps,
                         seed=run.seed, val_fraction=VAL_FRACTION, eval_every=0, amp=False, distill=kd,
                         distill_weight=distill[0], distill_temperature=distill[1])
    quant = QuantSpec(tawq_core.create("quantizer", run.quantizer)) if run.quantizer != "fp32" else None
    recipe = Recipe(spec, config, quant, QatInit.FP32 if finetune else QatInit.SCRATCH,
                    Calibration(task.batch_size) if run.init == "ptq" else None)
    data = Data(splits, task.timesteps)
    started = time.perf_counter()
    produced = produce(recipe, data, Runtime(torch.device(device), progress=False),
                       reference=fp32_model if fp32_state is not None else None, copy_reference=False)
    model = produced.model
    test = (produced.result.test_accuracy if produced.result is not None else
            evaluate_model(model, data, device, TrainConfig.eval_batch_size))
    val = evaluate_validation(model, splits, task, run.seed, device)
    bits, bits_total = storage_bits(model)
    report = produced.report
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if run.init == "fp32" else None
    return Outcome(run, test, val, bits, bits_total, report.params_quantized if report else 0,
                   report.fraction_quantized if report else 0.0, time.perf_counter() - started, state)


def evaluate_validation(model: torch.nn.Module, splits: Any, task: Task, seed: int, device: str) -> float:
    """Accuracy on the held-out tenth of the training set that `train` set aside for this seed."""
    n_val = max(1, round(len(splits.train) * VAL_FRACTION))
    generator = torch.Generator().manual_seed(seed)  # the split `tawq_core.train` makes for val_fraction
    _, val = torch.utils.data.random_split(splits.train, [len(splits.train) - n_val, n_val], generator=generator)
    return evaluate(model, val, splits.encoding, task.timesteps, device)


def is_qat(quantizer: str) -> bool:
    """Whether `quantizer` is trained (QAT) or calibrated (PTQ): its own mode, as the pipeline decides."""
    return tawq_core.create("quantizer", quantizer).mode is tawq_core.QuantMode.QAT


def plan(tasks: dict[str, Task], seeds: list[int], quantizers: list[str], inits: list[str]) -> list[Run]:
    runs = []
    for name in tasks:
        for seed in seeds:
            runs.append(Run(name, seed, "fp32", "fp32"))
            for q in quantizers:
                if is_qat(q):
                    runs += [Run(name, seed, q, init) for init in inits]
                else:
                    runs.append(Run(name, seed, q, "ptq"))
    return runs


def run_all(tasks: dict[str, Task], runs: list[Run], jobs: int, device: str,
            distill: tuple[float, float] = (0.5, 2.0)) -> list[Outcome]:
    """fp32 and from-scratch runs start at once; PTQ and fine-tuning wait for their seed's fp32 model."""
    waiting = [r for r in runs if r.init in ("ptq", *FINETUNES)]
    ready = [r for r in runs if r not in waiting]
    done: list[Outcome] = []

    def dependents(outcome: Outcome) -> list[tuple[Run, dict[str, torch.Tensor]]]:
        r = outcome.run
        return [(d, outcome.state) for d in waiting if (d.task, d.seed) == (r.task, r.seed)]

    if jobs == 1:
        queue: list[tuple[Run, dict[str, torch.Tensor] | None]] = [(r, None) for r in ready]
        while queue:
            run, state = queue.pop(0)
            done.append(_log(execute(tasks[run.task], run, device, state, distill)))
            if run.init == "fp32":
                queue += dependents(done[-1])
        return done
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        pending: set[Future] = {pool.submit(execute, tasks[r.task], r, device, None, distill) for r in ready}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                outcome = _log(future.result())
                done.append(outcome)
                if outcome.run.init == "fp32":
                    pending |= {pool.submit(execute, tasks[d.task], d, device, s, distill)
                                for d, s in dependents(outcome)}
    return done


def _log(outcome: Outcome) -> Outcome:
    r = outcome.run
    print(f"  {r.task:8} seed {r.seed} {r.quantizer:8} {r.init:9} test {100 * outcome.test_accuracy:5.1f} "
          f"val {100 * outcome.val_accuracy:5.1f}  {outcome.train_seconds:6.1f}s", file=sys.stderr, flush=True)
    return outcome


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    fp32 = {(o.run.task, o.run.seed): o.test_accuracy for o in outcomes if o.run.init == "fp32"}
    groups: dict[tuple[str, str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.run.task, o.run.quantizer, o.run.init), []).append(o)
    rows = []
    for (task, quantizer, init), members in groups.items():
        rows.append({
            "task": task, "quantizer": quantizer, "init": init,
            "test": _stats([100 * o.test_accuracy for o in members]),
            "drop_pp": _stats([100 * (o.test_accuracy - fp32[(task, o.run.seed)]) for o in members]),
            "val": _stats([100 * o.val_accuracy for o in members]),
            "bits_per_weight": statistics.fmean(o.bits_per_weight for o in members),
            "bits_per_weight_total": statistics.fmean(o.bits_per_weight_total for o in members),
            "fraction_quantized": statistics.fmean(o.fraction_quantized for o in members),
            "train_seconds": statistics.fmean(o.train_seconds for o in members),
        })
    order = {"fp32": 0, "tawq": 1, "mtawq": 2, "ptq8": 3, "binary": 4, "ternary": 5}
    rows.sort(key=lambda r: (r["task"], order.get(r["quantizer"], 9), r["init"]))
    defaults = {}
    for task in {r["task"] for r in rows}:
        for q in sorted({r["quantizer"] for r in rows if r["task"] == task and r["init"] not in ("ptq", "fp32")}):
            candidates = [r for r in rows if r["task"] == task and r["quantizer"] == q]
            if candidates:  # higher mean validation accuracy wins; on a tie the cheaper fine-tuning
                best = max(candidates, key=lambda r: (round(r["val"]["mean"], 6), r["init"] in FINETUNES))
                defaults[f"{task}/{q}"] = best["init"]
    return {"rows": rows, "default_init": defaults}


def markdown(summary: dict[str, Any], tasks: dict[str, Task], seeds: list[int]) -> str:
    out = []
    for name, task in tasks.items():
        rows = [r for r in summary["rows"] if r["task"] == name]
        if not rows:
            continue
        out += [f"### {name}: {task.model} {task.model_options}, T = {task.timesteps}, seeds {seeds}", "",
                "| quantizer | trained | top-1 % median | mean ± std | Δ vs fp32 pp (median) | val % (mean) "
                "| bits/weight (codes / +scales) | quantized params | time s |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            chosen = summary["default_init"].get(f"{name}/{r['quantizer']}") == r["init"]
            label = {"fp32": "fp32 reference", "ptq": "PTQ of fp32", "scratch": "from scratch",
                     "finetune": "fine-tuned from fp32", "finetune-kd": "fine-tuned from fp32, distilled"
                     }[r["init"]] + (" (default)" if chosen else "")
            t, d = r["test"], r["drop_pp"]
            val = f"{r['val']['mean']:.1f}"
            out.append(f"| {r['quantizer']} | {label} | {t['median']:.1f} | {t['mean']:.1f} ± {t['std']:.1f} | "
                       f"{d['median']:+.1f} | {val} | {r['bits_per_weight']:.2f} / {r['bits_per_weight_total']:.2f}"
                       f" | {100 * r['fraction_quantized']:.0f}% | {r['train_seconds']:.0f} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--tasks", default="mnist1d,digits")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quantizers", default="tawq,ptq8,binary,ternary")
    parser.add_argument("--inits", default="scratch,finetune", help="how QAT quantizers start")
    parser.add_argument("--distill-weight", type=float, default=0.5, help="finetune-kd: KL share of the loss")
    parser.add_argument("--distill-temperature", type=float, default=2.0, help="finetune-kd: softmax temperature")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 epoch per run")
    parser.add_argument("--out", default="results/accuracy_study.json")
    args = parser.parse_args(argv)
    tasks = {name: SCALES[args.scale][name] for name in args.tasks.split(",")}
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        tasks = {n: replace(t, epochs=1, finetune_epochs=1) for n, t in tasks.items()}
        seeds = seeds[:1]
    runs = plan(tasks, seeds, args.quantizers.split(","), args.inits.split(","))
    print(f"{len(runs)} runs, {args.jobs} process(es), device {args.device}", file=sys.stderr)
    started = time.perf_counter()
    distill = (args.distill_weight, args.distill_temperature)
    outcomes = run_all(tasks, runs, args.jobs, args.device, distill)
    summary = summarize(outcomes)
    table = markdown(summary, tasks, seeds)
    print(table)
    print(f"default init (by validation accuracy): {summary['default_init']}")
    record = {
        "command": " ".join(["benchmarks/accuracy_study.py", *(argv if argv is not None else sys.argv[1:])]),
        "scale": args.scale, "tasks": {n: asdict(t) for n, t in tasks.items()}, "seeds": seeds,
        "val_fraction": VAL_FRACTION, "wall_seconds": time.perf_counter() - started,
        "distill": {"weight": distill[0], "temperature": distill[1]},
        "versions": {"tawq": tawq_core.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": platform.processor() or platform.machine(), "device": args.device,
        "runs": [{**asdict(o.run), **{f.name: getattr(o, f.name) for f in fields(o) if f.name not in ("run", "state")}}
                 for o in outcomes],
        "summary": summary, "markdown": table,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out} ({record['wall_seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
