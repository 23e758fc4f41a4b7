"""The training loop shared by `tawq train` and the bench runner: the reference recipe, reproducibly.

AdamW (no weight decay on biases, norms and scalars) with a per-step linear warm-up then cosine decay,
label-smoothed cross-entropy, optional gradient clipping, mixed precision on CUDA, and seeding that
makes two CPU runs with the same seed bit-identical. Inputs are encoded time-major with
`tawq_core.encode_batch`. Under torchrun the same call trains data-parallel (see
`tawq_core.training.distributed`). Nothing here knows about quantization: a model whose layers `quantize`
swapped, or one rebuilt from a checkpoint, trains like any other module (fine-tuning).
"""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, Subset, random_split

from tawq_core.plugin_api.data import DatasetSplits, Encoding, encode_batch
from tawq_core.plugin_api.errors import ConfigError, ShapeError, TrainingDiverged
from tawq_core.training import distributed
from tawq_core.training.distill import DistillationLoss, check_teacher, teacher_logits
from tawq_core.training.progress import progress_bar
from tawq_core.training.train_guard import WeightWatch, check_batch
from tawq_core.training.train_resume import ResumeFile, TrainingState
from tawq_core.validators import check_int_at_least


def _check_int(name: str, value: Any, minimum: int) -> None:
    check_int_at_least(f"training {name}", value, minimum)


def _check_float(name: str, value: Any, low: float, high: float | None = None, *, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"> {low}" if open_low else f">= {low}"
        raise ConfigError(f"training {name} must be a number {bound}{f' and < {high}' if high else ''}, "
                          f"got {value!r}")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; invalid values raise `ConfigError` on construction.

    ``batch_size`` is the global batch (split evenly over torchrun processes). ``amp="auto"`` turns on
    float16 autocast + GradScaler on CUDA only. ``val_fraction > 0`` holds out that share of the training
    set (seeded) and evaluates on it each epoch instead of the test set, for tuning without test leakage.
    ``eval_every`` evaluates every N epochs (0: only the final test evaluation). ``distill`` mixes the
    label loss with a KL term towards a teacher's logits softened by ``distill_temperature``, weighted
    ``distill_weight`` (see `tawq_core.training.distill`); `train` then needs its ``teacher`` argument.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float | None = None
    amp: bool | str = "auto"
    seed: int = 0
    timesteps: int = 4
    eval_batch_size: int = 256
    num_workers: int = 0
    val_fraction: float = 0.0
    eval_every: int = 1
    distill: bool = False
    distill_weight: float = 0.5
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("timesteps", self.timesteps, 1)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_int("num_workers", self.num_workers, 0)
        _check_int("seed", self.seed, 0)
        _check_int("eval_every", self.eval_every, 0)
        _check_float("lr", self.lr, 0.0, open_low=True)
        _check_float("weight_decay", self.weight_decay, 0.0)
        _check_float("warmup_epochs", self.warmup_epochs, 0.0)
        _check_float("label_smoothing", self.label_smoothing, 0.0, 1.0)
        _check_float("val_fraction", self.val_fraction, 0.0, 1.0)
        if self.grad_clip is not None:
            _check_float("grad_clip", self.grad_clip, 0.0, open_low=True)
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"warmup_epochs ({self.warmup_epochs}) cannot exceed epochs ({self.epochs})")
        if self.amp not in ("auto", True, False):
            raise ConfigError(f"amp must be 'auto', True or False, got {self.amp!r}")
        if self.seed >= 2**32:
            raise ConfigError(f"seed must be < 2**32 (numpy's limit), got {self.seed}")
        if not isinstance(self.distill, bool):
            raise ConfigError(f"training distill must be true or false, got {self.distill!r}")
        _check_float("distill_temperature", self.distill_temperature, 0.0, open_low=True)
        _check_float("distill_weight", self.distill_weight, 0.0)
        if self.distill_weight > 1:
            raise ConfigError(f"training distill_weight must be between 0 and 1, got {self.distill_weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a preset or a checkpoint's record; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass
class EpochRecord:
    """One epoch: mean training loss and accuracy (over all ranks), lr at its end, eval accuracy if run."""

    epoch: int
    train_loss: float
    train_accuracy: float
    lr: float
    eval_accuracy: float | None
    seconds: float


@dataclass
class TrainResult:
    """What `train` returns. ``best_accuracy`` is the best per-epoch accuracy on ``eval_split``
    ("validation" when ``val_fraction > 0``, else "test"); it is a record, never used to pick weights:
    the model is left with its final weights, whose accuracy is ``test_accuracy``."""

    test_accuracy: float
    best_accuracy: float
    best_epoch: int
    eval_split: str
    train_seconds: float
    steps: int
    world_size: int
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices): call before building a model to fix its init."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: derive NumPy/random seeds from the per-worker torch seed the loader assigned."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Per-step schedule: linear warm-up to the base lr over `warmup_steps`, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices and kernels only: biases, norm scales, quantizer scales and scalars are exempt."""
    decay, exempt = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else exempt).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def _amp_enabled(amp: bool | str, device: torch.device) -> bool:
    if amp == "auto":
        return device.type == "cuda"
    if amp and device.type == "cpu":
        raise ConfigError("amp=True needs an accelerator (float16 autocast is not used on cpu); use amp='auto'")
    return bool(amp)


def _encoding_of(encoding: DatasetSplits | Encoding | str) -> Encoding:
    if isinstance(encoding, DatasetSplits):
        return encoding.encoding
    try:
        return Encoding(encoding)
    except ValueError:
        raise ConfigError(f"unknown encoding {encoding!r}; use 'static' or 'temporal'") from None


def _name_of(encoding: DatasetSplits | Encoding | str) -> str | None:
    return encoding.name if isinstance(encoding, DatasetSplits) else None


def _forward(model: nn.Module, x: torch.Tensor, encoding: Encoding, timesteps: int) -> torch.Tensor:
    out = model(encode_batch(x, encoding, timesteps))
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ShapeError(
            f"model returned shape {tuple(out.shape)} for a batch of {x.shape[0]}; models must return "
            "logits [B, num_classes] (average over time inside the model)"
        )
    return out


def evaluate(model: nn.Module, dataset: Dataset, encoding: DatasetSplits | Encoding | str, timesteps: int,
             device: torch.device | str = "cpu", batch_size: int = 256, amp: bool = False) -> float:
    """Top-1 accuracy of `model` on `dataset` under inference mode (the model is moved to `device`).

    Under torchrun each rank scores every W-th sample and the correct/total counts are summed over
    ranks, so the figure is exact and identical on every rank. The model's train/eval mode is restored.
    """
    _check_int("timesteps", timesteps, 1)
    _check_int("batch_size", batch_size, 1)
    enc, device = _encoding_of(encoding), torch.device(device)
    ctx = distributed.current()
    if len(dataset) == 0:
        raise ConfigError("cannot evaluate on an empty dataset")
    net = distributed.unwrap(model).to(device)
    subset = Subset(dataset, distributed.shard_indices(len(dataset), ctx)) if ctx.enabled else dataset
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False)
    counts = torch.zeros(2, dtype=torch.float64, device=device)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            for step, (x, y) in enumerate(loader, start=1):
                check_batch(x, range(len(subset)), step, batch_size, subset, _name_of(encoding), "evaluation")
                x, y = x.to(device), torch.as_tensor(y).to(device)
                logits = _forward(net, x, enc, timesteps)
                counts[0] += (logits.argmax(dim=1) == y).sum()
                counts[1] += y.numel()
    finally:
        net.train(was_training)
    distributed.all_reduce_sum(counts, ctx)
    return float(counts[0] / counts[1])


def _timesteps_for(splits: DatasetSplits, config: TrainConfig) -> int:
    if splits.encoding is Encoding.TEMPORAL and splits.timesteps != config.timesteps:
        raise ConfigError(
            f"dataset {splits.name!r} has {splits.timesteps} time bins per sample; "
            f"set timesteps={splits.timesteps} (got {config.timesteps})"
        )
    return config.timesteps


def _train_and_eval_sets(splits: DatasetSplits, config: TrainConfig) -> tuple[Dataset, Dataset, str]:
    if config.val_fraction == 0:
        return splits.train, splits.test, "test"
    n_val = max(1, round(len(splits.train) * config.val_fraction))
    if n_val >= len(splits.train):
        raise ConfigError(f"val_fraction {config.val_fraction:g} holds out {n_val} of the {len(splits.train)} "
                          "training samples, leaving none to train on; use a smaller val_fraction (--val-fraction)")
    generator = torch.Generator().manual_seed(config.seed)
    train_part, val_part = random_split(splits.train, [len(splits.train) - n_val, n_val], generator=generator)
    return train_part, val_part, "validation"


def _advice(config: TrainConfig) -> str:
    clip = "lower grad_clip" if config.grad_clip else "enable gradient clipping (grad_clip=1.0)"
    return f"lower the learning rate (lr={config.lr:g}), {clip}, or check the inputs for NaN/inf"


def _diverged(loss: float, epoch: int, step: int, steps: int, config: TrainConfig) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged: loss is {loss} at epoch {epoch}/{config.epochs}, step "
                            f"{step}/{steps}; {_advice(config)}")


def train(model: nn.Module, splits: DatasetSplits, config: TrainConfig, device: torch.device | str = "cpu",
          progress: bool | None = None, on_epoch: Callable[[EpochRecord], None] | None = None,
          backend: object | None = None, teacher: nn.Module | None = None,
          resume: ResumeFile | None = None) -> TrainResult:
    """Train `model` in place on ``splits.train`` and return accuracy, history and timing.

    `device` is where training runs; under torchrun an index-less accelerator becomes each rank's own
    card, and `backend` (a `tawq_core.Backend`) names the collective library. `on_epoch` is called on
    every rank after each epoch (guard file writes with `distributed.is_main_process()`). The model
    keeps its final weights and the train/eval mode it came in with. `teacher` (with ``config.distill``)
    is the frozen model distilled from: held in eval mode on `device`, never given gradients. `resume`
    saves the state after each epoch and continues a saved run (`tawq_core.training.train_resume`); NaN/inf in a
    batch or in the weights stops training naming the sample or weight (`tawq_core.training.train_guard`).
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_teacher(teacher, model, config.distill)
    timesteps = _timesteps_for(splits, config)
    ctx, device = distributed.setup(device, backend)
    seed_everything(config.seed)
    train_set, eval_set, eval_split = _train_and_eval_sets(splits, config)
    sampler = distributed.train_sampler(train_set, ctx, config.seed)
    loader = DataLoader(
        train_set, batch_size=distributed.per_rank_batch(config.batch_size, ctx), sampler=sampler,
        drop_last=True, num_workers=config.num_workers, pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(config.seed),
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        held = f" left after val_fraction {config.val_fraction:g}" if eval_split == "validation" else ""
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(train_set)} training samples{held}; "
                          f"use a smaller batch{' or val_fraction' if held else ''}")
    was_training = model.training
    model.to(device).train()
    net = distributed.wrap_model(model, ctx, device)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    total_steps = config.epochs * steps_per_epoch
    scheduler = warmup_cosine(optimizer, round(config.warmup_epochs * steps_per_epoch), total_steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    distiller = DistillationLoss(criterion, config.distill_weight, config.distill_temperature)
    teacher_was_training = teacher is not None and teacher.training
    if teacher is not None:
        teacher.to(device).eval()
    use_amp = _amp_enabled(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    start = resume.restore(model, optimizer, scheduler, scaler, loader.generator) if resume else TrainingState()
    history = [EpochRecord(**record) for record in start.history]
    watch = WeightWatch(model, device, _advice(config))
    started = time.perf_counter() - start.seconds
    epochs_bar = progress_bar(range(start.next_epoch, config.epochs + 1), enabled=progress, desc="train",
                              unit="epoch")
    for epoch in epochs_bar:
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch)
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
        steps_bar = progress_bar(loader, enabled=progress, desc=f"epoch {epoch}", leave=False, unit="step")
        for step, (x, y) in enumerate(steps_bar, start=1):
            check_batch(x, sampler, step, loader.batch_size, train_set, splits.name)
            x = x.to(device, non_blocking=True)
            y = torch.as_tensor(y).to(device, non_blocking=True).long()
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = _forward(net, x, splits.encoding, timesteps)
                loss = criterion(logits.float(), y) if teacher is None else distiller(
                    logits.float(), y, teacher_logits(partial(_forward, teacher, x, splits.encoding, timesteps)))
            shared = distributed.all_reduce_sum(loss.detach().clone(), ctx) / ctx.world_size
            if not torch.isfinite(shared):
                raise _diverged(shared.item(), epoch, step, steps_per_epoch, config)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            watch.after_step(step, epoch, config.epochs, end_of_epoch=step == steps_per_epoch)
            n = y.numel()
            sums += torch.stack([loss.detach().double() * n, (logits.argmax(1) == y).sum().double(),
                                 torch.tensor(float(n), dtype=torch.float64, device=device)])
        distributed.all_reduce_sum(sums, ctx)
        distributed.sync_buffers(model, ctx)
        evaluated = config.eval_every and (epoch % config.eval_every == 0 or epoch == config.epochs)
        eval_acc = (evaluate(model, eval_set, splits.encoding, timesteps, device, config.eval_batch_size,
                             use_amp) if evaluated else None)
        model.train()
        record = EpochRecord(epoch, float(sums[0] / sums[2]), float(sums[1] / sums[2]),
                             optimizer.param_groups[0]["lr"], eval_acc, time.perf_counter() - epoch_start)
        history.append(record)
        epochs_bar.set_postfix(loss=f"{record.train_loss:.3f}", acc=f"{record.train_accuracy:.3f}",
                               **({eval_split[:4]: f"{eval_acc:.3f}"} if eval_acc is not None else {}))
        if on_epoch is not None:
            on_epoch(record)
        if resume is not None:
            resume.save(epoch, model, optimizer, scheduler, scaler, loader.generator,
                        [asdict(r) for r in history], time.perf_counter() - started)
    train_seconds = time.perf_counter() - started
    epochs_bar.close()
    if net is not model:  # DDP holds reference cycles: free it now, while the process group still exists,
        del net           # not at some later garbage collection after `distributed.shutdown` destroyed it
        gc.collect()

    last = history[-1].eval_accuracy
    test_acc = last if eval_split == "test" and last is not None else evaluate(
        model, splits.test, splits.encoding, timesteps, device, config.eval_batch_size, use_amp)
    scored = [(r.eval_accuracy, r.epoch) for r in history if r.eval_accuracy is not None]
    best_acc, best_epoch = max(scored, key=lambda s: (s[0], -s[1])) if scored else (test_acc, config.epochs)
    model.train(was_training)
    if teacher is not None:
        teacher.train(teacher_was_training)
    return TrainResult(test_acc, best_acc, best_epoch, eval_split if scored else "test", train_seconds,
                       total_steps, ctx.world_size, history)
