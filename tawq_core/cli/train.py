"""`tawq train`: train one model on one dataset (optionally quantized) and save a checkpoint + summary.

QAT quantizers (and fp32) swap the layers before training, so the network learns with its quantized
weights; PTQ quantizers are applied to the trained fp32 network and calibrated on training batches.
The output folder gets ``model.safetensors`` (loadable with `tawq_core.build_from_checkpoint`) and
``summary.json`` (accuracy, time, recipe, versions), both written atomically and only by rank 0 under
torchrun. While training, ``resume.safetensors`` holds the state after the last finished epoch: an
interrupted run (Ctrl-C, a killed process) continues from it when the same command runs again, and a
finished run removes it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import click

from tawq_core.overwrite import refuse_overwrite
from tawq_core.pipeline import (
    Calibration,
    Data,
    ModelSpec,
    QuantSpec,
    Recipe,
    Runtime,
    evaluate_model,
    first_device,
    produce,
    reference_recipe,
)
from tawq_core.plugin_api.data import DatasetSplits, Encoding, load_dataset
from tawq_core.plugin_api.errors import ConfigError, Interrupted
from tawq_core.plugin_api.quantizer import QuantMode
from tawq_core.plugin_api.registry import create, get_registry
from tawq_core.training import distributed
from tawq_core.training.checkpoint import WEIGHTS_NAME, _resolve, save_checkpoint, write_json
from tawq_core.training.distill import load_teacher
from tawq_core.training.loop import TrainConfig
from tawq_core.training.train_resume import RESUME_NAME, ResumeFile


def parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``("width=128", "neuron=plif", "channels=[32,64]")`` -> dict; values are JSON when they parse."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def _prepare_out(out: Path) -> None:
    if not distributed.is_main_process():
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {out}: {exc.strerror or exc}; "
                          "choose a writable --out") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"output folder {out} is not writable; choose another --out")


def _timesteps(splits: DatasetSplits, requested: int | None) -> int:
    if splits.encoding is Encoding.TEMPORAL:
        if requested is not None and requested != splits.timesteps:
            raise ConfigError(f"dataset {splits.name!r} has {splits.timesteps} time bins per sample; "
                              f"drop --timesteps or set it to {splits.timesteps}")
        return int(splits.timesteps or 0)
    return requested if requested is not None else TrainConfig.timesteps


def _interrupted(resume: ResumeFile, epochs: int) -> str:
    if resume.saved_epoch:
        return (f"interrupted: epoch {resume.saved_epoch}/{epochs} is saved in {resume.path}; re-run the same "
                "command to resume from it")
    return "interrupted before the first epoch finished: nothing was saved; re-run the same command to start again"


@click.command(name="train")
@click.option("--model", "model_name", required=True, help="Model plugin (see `tawq plugins`).")
@click.option("--dataset", "dataset_name", required=True, help="Dataset plugin, e.g. digits, mnist1d.")
@click.option("--quantizer", "quantizer_name", default=None, help="Quantizer plugin; omit for plain fp32.")
@click.option("--timesteps", type=int, default=None, help="T; default 4 for static data, the bins for events.")
@click.option("--epochs", type=int, default=TrainConfig.epochs, show_default=True)
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True,
              help="Global batch (split over torchrun processes).")
@click.option("--lr", type=float, default=TrainConfig.lr, show_default=True)
@click.option("--weight-decay", type=float, default=TrainConfig.weight_decay, show_default=True)
@click.option("--warmup-epochs", type=float, default=TrainConfig.warmup_epochs, show_default=True)
@click.option("--label-smoothing", type=float, default=TrainConfig.label_smoothing, show_default=True)
@click.option("--grad-clip", type=float, default=None, help="Clip the gradient norm to this value.")
@click.option("--val-fraction", type=float, default=0.0, show_default=True,
              help="Hold out this share of the training set for per-epoch validation.")
@click.option("--eval-every", type=int, default=TrainConfig.eval_every, show_default=True,
              help="Evaluate every N epochs (0: only the final test evaluation).")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--distill-from", type=click.Path(path_type=Path), default=None, metavar="CHECKPOINT",
              help="Distill from this trained model (a `tawq train` checkpoint or --out folder, same dataset).")
@click.option("--distill-weight", type=float, default=TrainConfig.distill_weight, show_default=True,
              help="Share of the distillation (KL) term in the loss; the rest is the label loss.")
@click.option("--distill-temperature", type=float, default=TrainConfig.distill_temperature, show_default=True)
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="cpu, cuda, npu...")
@click.option("--data-dir", default=None, help="Folder holding dataset files (file-backed datasets).")
@click.option("--download", is_flag=True, help="Let the dataset download missing files.")
@click.option("--neuron", default=None, help="Neuron plugin for the model (default: the model's own).")
@click.option("--model-option", "model_pairs", multiple=True, metavar="KEY=VALUE", help="Model size option.")
@click.option("--dataset-option", "dataset_pairs", multiple=True, metavar="KEY=VALUE")
@click.option("--quantizer-option", "quantizer_pairs", multiple=True, metavar="KEY=VALUE")
@click.option("--neuron-option", "neuron_pairs", multiple=True, metavar="KEY=VALUE")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a TTY).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for checkpoint + summary.")
def train(model_name: str, dataset_name: str, quantizer_name: str | None, timesteps: int | None,
                  epochs: int, batch_size: int, lr: float, weight_decay: float, warmup_epochs: float,
                  label_smoothing: float, grad_clip: float | None, val_fraction: float, eval_every: int, seed: int,
                  distill_from: Path | None, distill_weight: float, distill_temperature: float,
                  backend_name: str, data_dir: str | None, download: bool, neuron: str | None,
                  model_pairs: tuple[str, ...], dataset_pairs: tuple[str, ...], quantizer_pairs: tuple[str, ...],
                  neuron_pairs: tuple[str, ...], progress: bool | None, out: Path) -> None:
    """Train one model and save OUT/model.safetensors and OUT/summary.json."""
    model_options = parse_options(model_pairs, "--model-option")
    dataset_options = parse_options(dataset_pairs, "--dataset-option")
    quantizer_options = parse_options(quantizer_pairs, "--quantizer-option")
    neuron_options = parse_options(neuron_pairs, "--neuron-option")
    backend = create("backend", backend_name).require()
    quantizer = create("quantizer", quantizer_name, **quantizer_options) if quantizer_name else None
    # unknown names fail before the (possibly slow) dataset load
    get_registry().entry("model", model_name)
    if neuron is not None:
        get_registry().entry("neuron", neuron)
    _prepare_out(out)
    # before the (possibly slow) dataset load, like the names above
    if distill_from is not None:  # the teacher is read, then OUT/model.safetensors written: never one file
        refuse_overwrite(out / WEIGHTS_NAME, [distill_from, _resolve(distill_from)], "--out")
    teacher = load_teacher(distill_from, dataset_name, backend.device) if distill_from is not None else None
    binned = dataset_options.pop("timesteps", None)  # --dataset-option timesteps=N: the same request as --timesteps
    if binned is not None and timesteps is not None and binned != timesteps:
        raise ConfigError(f"--timesteps {timesteps} and --dataset-option timesteps={binned} disagree; give one of them")
    timesteps = timesteps if timesteps is not None else binned
    splits = load_dataset(dataset_name, dataset_options, data_dir=data_dir, download=download, timesteps=timesteps)
    T = _timesteps(splits, timesteps)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, grad_clip=grad_clip,
                         seed=seed, timesteps=T, val_fraction=val_fraction, eval_every=eval_every,
                         distill=distill_from is not None, distill_weight=distill_weight,
                         distill_temperature=distill_temperature)

    factory_options = splits.model_options(model_options, "--model-option")
    if neuron is not None:
        factory_options["neuron"] = neuron
    if neuron_options:
        factory_options["neuron_options"] = neuron_options
    quant = QuantSpec(quantizer) if quantizer is not None else None
    ptq = quant is not None and quant.mode is QuantMode.PTQ
    recipe = Recipe(ModelSpec(model_name, factory_options), config, quant,
                    calibration=Calibration(config.batch_size) if ptq else None)
    data = Data(splits, T)
    resume = ResumeFile(out / RESUME_NAME, {
        "model": model_name, "model_options": factory_options, "dataset": dataset_name,
        "dataset_options": dataset_options, "quantizer": quantizer_name, "quantizer_options": quantizer_options,
        "train": config.to_dict(), "distill_from": str(distill_from) if distill_from else None,
    }, writer=distributed.is_main_process())
    runtime = Runtime(backend.device, backend, progress, resume, log=lambda line: click.echo(line, err=True))
    distill = (lambda: teacher) if teacher is not None else None
    try:
        if ptq:  # the fp32 model is trained, then quantized in place and calibrated
            fp32 = produce(reference_recipe(recipe), data, runtime, teacher=distill)
            device = first_device(fp32.model, backend.device)
            produced = produce(recipe, data, dataclasses.replace(runtime, device=device),
                               reference=lambda: fp32.model, copy_reference=False)
            result, accuracy = fp32.result, evaluate_model(produced.model, data, device, config.eval_batch_size)
        else:
            produced = produce(recipe, data, runtime, teacher=distill)
            result, accuracy = produced.result, None
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(resume, config.epochs)) from None  # exit code 130
    assert result is not None  # both paths trained a model
    fp32_accuracy, accuracy = (result.test_accuracy, accuracy) if ptq else (None, result.test_accuracy)
    model = produced.model
    report = produced.report.to_dict() if produced.report is not None else None
    if not distributed.is_main_process():
        return

    from tawq_core.bench.provenance import provenance

    used = {"model": [model_name], "dataset": [dataset_name], "backend": [backend_name],
            "quantizer": [quantizer_name] if quantizer_name else [], "neuron": [neuron] if neuron else []}
    meta = {"model": model_name, "model_options": factory_options, "dataset": dataset_name,
            "dataset_options": dataset_options, "quantizer": quantizer_name,
            "quantizer_options": quantizer_options, "timesteps": T, "train": config.to_dict(),
            "test_accuracy": accuracy}
    checkpoint = save_checkpoint(out / WEIGHTS_NAME, model, meta)
    summary = {
        **meta,
        "quantization": ({"mode": quantizer.mode.value, "applied": "after training (PTQ)" if ptq
                          else "before training (QAT)", "report": report} if quantizer is not None else None),
        "fp32_test_accuracy": fp32_accuracy,
        "best_accuracy": result.best_accuracy, "best_epoch": result.best_epoch, "eval_split": result.eval_split,
        "train_seconds": result.train_seconds, "steps": result.steps, "world_size": result.world_size,
        "history": result.to_dict()["history"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "backend": backend.describe(), "provenance": provenance(used),
        "options": click.get_current_context().params, "checkpoint": checkpoint.name,
    }
    write_json(out / "summary.json", summary)
    resume.clear()  # the checkpoint and summary hold the finished run
    click.echo(f"{model_name} on {dataset_name}{f' with {quantizer_name}' if quantizer_name else ''}: "
               f"test accuracy {100 * accuracy:.2f} % (T={T}, {config.epochs} epochs, "
               f"{result.train_seconds:.1f} s); wrote {checkpoint} and {out / 'summary.json'}")

