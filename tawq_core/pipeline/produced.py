"""Pipeline stages build -> quantize by policy -> calibrate -> train or fine-tune (distilling when the
recipe says so) -> evaluate, and `produce`, the flow through them.

`tawq train`, the bench (`tawq_core.bench.runner`) and benchmarks/accuracy_study.py all produce their
models through `produce`, so a fix to how a model is started, quantized, calibrated, trained or scored
reaches every one of them; they add only what is theirs (a checkpoint and summary, a cache and a
matrix, a study table). Each stage is a function of typed inputs (the dataclasses below) to a typed
output; the deploy and measure stages that follow are `tawq_core.pipeline.deployed` and `.measured`.

How a model is produced depends only on its quantizer's mode: PTQ quantizes (a copy of) the trained fp32
reference and calibrates it on the first training batches; QAT and unquantized models start from a fresh
network of the seed, or for fine-tuning (`QatInit.FP32`) from a copy of the fp32 reference, are quantized
by the policy and trained. Distillation is decided by the `TrainConfig` alone (``distill``): the teacher
is the caller's `teacher` source, or the fp32 reference when it gives none.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from tawq_core.nn.quantization import QuantizeReport, QuantPolicy, quantize
from tawq_core.plugin_api.data import DatasetSplits, encode_batch
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.quantizer import Quantizer, QuantMode
from tawq_core.plugin_api.registry import create
from tawq_core.training import distributed, resources
from tawq_core.training.loop import TrainConfig, TrainResult, evaluate, seed_everything, train
from tawq_core.training.train_resume import ResumeFile

#: A model made on demand (the fp32 reference, a distillation teacher): only paid for when a stage needs it.
ModelSource = Callable[[], nn.Module]


class QatInit(str, Enum):
    """Where a quantization-aware model starts."""

    FP32 = "fp32"  # a quantized copy of the trained fp32 reference of the same seed (fine-tuning)
    SCRATCH = "scratch"  # a fresh network of the seed, built like the fp32 one


@dataclass(frozen=True)
class ModelSpec:
    """A registered model and its factory options (the dataset's ``num_classes``/``sample_shape`` included)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantSpec:
    """A quantizer instance (fresh per model: nothing a PTQ quantizer fits is shared) and the layers it swaps."""

    quantizer: Quantizer
    policy: QuantPolicy = field(default_factory=QuantPolicy)

    @property
    def mode(self) -> QuantMode:
        """How the model gets its weights: the quantizer's mode, except that a mixed-precision policy with any
        QAT quantizer is trained (QAT) as a whole."""
        layer_modes = {q.mode if isinstance(q, Quantizer) else create("quantizer", q).mode
                       for _, q in self.policy.layer_quantizers}
        return QuantMode.QAT if QuantMode.QAT in layer_modes else self.quantizer.mode


@dataclass(frozen=True)
class Data:
    """A loaded dataset and the number of timesteps every stage encodes it with."""

    splits: DatasetSplits
    timesteps: int

    def batches(self, dataset: Any, batch_size: int, count: int, device: torch.device | str) -> list[torch.Tensor]:
        """The first `count` batches of `dataset` in order (deterministic), encoded time-major ``[T, B, ...]``."""
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        return [encode_batch(x, self.splits.encoding, self.timesteps).to(device) for x, _ in islice(loader, count)]


@dataclass(frozen=True)
class Calibration:
    """PTQ calibration: the first `batches` training batches of `batch_size` samples."""

    batch_size: int
    batches: int = 8


@dataclass(frozen=True)
class Recipe:
    """How one model is produced: what to build, how to quantize it, how to train or calibrate it."""

    model: ModelSpec
    train: TrainConfig  # the seed is ``train.seed``; for PTQ, the recipe of the reference it starts from
    quant: QuantSpec | None = None  # None: the unquantized fp32 reference
    init: QatInit = QatInit.SCRATCH  # QAT only
    calibration: Calibration | None = None  # PTQ only

    def __post_init__(self) -> None:
        if self.mode is QuantMode.PTQ and self.calibration is None:
            raise ConfigError("a post-training quantizer needs a Calibration (batches and batch size)")

    @property
    def mode(self) -> QuantMode:
        """NONE for the fp32 reference. A quantizer that itself quantizes nothing (mode NONE, e.g. a plugin
        wrapping fp32) follows the recipe: given a Calibration it is applied post-training (a copy of the
        reference with its layers swapped in: how the bench compares such a row), without one it is trained
        like the reference (`tawq train`)."""
        if self.quant is None:
            return QuantMode.NONE
        if self.quant.mode is QuantMode.NONE:
            return QuantMode.PTQ if self.calibration is not None else QuantMode.NONE
        return self.quant.mode

    @property
    def seed(self) -> int:
        return self.train.seed

    @property
    def fine_tunes(self) -> bool:
        """True when the model starts from the fp32 reference (QAT fine-tuning, or PTQ)."""
        return self.mode is QuantMode.PTQ or (self.mode is QuantMode.QAT and self.init is QatInit.FP32)


@dataclass(frozen=True)
class Runtime:
    """Where and how a training stage runs; nothing here changes what it computes."""

    device: torch.device
    backend: Any = None  # a `tawq_core.Backend`: names the collective library under torchrun
    progress: bool | None = None
    resume: ResumeFile | None = None
    log: Callable[[str], None] | None = None


@dataclass
class Produced:
    """A produced model, the quantize report (None for fp32), the training result (None for PTQ: nothing
    was trained) and the seconds its training or calibration took."""

    model: nn.Module
    report: QuantizeReport | None
    result: TrainResult | None
    seconds: float


# -- the stages ----------------------------------------------------------------------------------------
def build_model(spec: ModelSpec, seed: int) -> nn.Module:
    """A fresh network, its initial weights drawn from `seed`."""
    seed_everything(seed)
    return create("model", spec.name, **spec.options)


def quantize_model(model: nn.Module, spec: QuantSpec, timesteps: int) -> QuantizeReport:
    """Swap the policy's layers of `model` in place (`tawq_core.quantize`)."""
    return quantize(model, spec.quantizer, timesteps, policy=spec.policy)


def calibrate_model(model: nn.Module, data: Data, calibration: Calibration, device: torch.device) -> None:
    """Fit every quantized layer's state (`tawq_core.calibrate`) on the first training batches, in order."""
    from tawq_core.nn.calibration import calibrate

    inputs = data.batches(data.splits.train, calibration.batch_size, calibration.batches, device)
    model.to(device)
    calibrate(model, inputs)


def train_model(model: nn.Module, data: Data, config: TrainConfig, runtime: Runtime,
                teacher: ModelSource | None = None) -> TrainResult:
    """Train `model` in place after the memory check; out-of-memory becomes one line. The teacher is asked
    for only when ``config.distill`` is on: this is the one place distillation is wired."""
    device = runtime.device
    amp = config.amp is True or (config.amp == "auto" and device.type == "cuda")  # float16 autocast in `train`
    resources.check_training_memory(model, data.splits.sample_shape, data.timesteps,
                                    max(1, config.batch_size // distributed.world_size()), device,
                                    (data.splits.train, data.splits.test), log=runtime.log, amp=amp)
    distill_from = teacher() if config.distill and teacher is not None else None
    with resources.out_of_memory_as_config_error(config.batch_size):
        return train(model, data.splits, config, device=device, progress=runtime.progress,
                     backend=runtime.backend, teacher=distill_from, resume=runtime.resume)


def evaluate_model(model: nn.Module, data: Data, device: torch.device | str, batch_size: int) -> float:
    """Top-1 accuracy on the test split, in [0, 1]."""
    return evaluate(model, data.splits.test, data.splits, data.timesteps, device, batch_size=batch_size)


# -- the flow ------------------------------------------------------------------------------------------
def prepare(recipe: Recipe, timesteps: int, reference: ModelSource | None = None,
            copy_reference: bool = True) -> tuple[nn.Module, QuantizeReport | None]:
    """The model before training or calibration, already quantized: (a copy of) the fp32 `reference` when the
    recipe fine-tunes, else a fresh network of the seed. Without a reference a fine-tuning recipe gets a
    fresh network too: the shape a saved checkpoint of it is loaded into."""
    if recipe.fine_tunes and reference is not None:
        base = reference()
        model = copy.deepcopy(base) if copy_reference else base
    else:
        model = build_model(recipe.model, recipe.seed)
    report = quantize_model(model, recipe.quant, timesteps) if recipe.quant is not None else None
    return model, report


def produce(recipe: Recipe, data: Data, runtime: Runtime, reference: ModelSource | None = None,
            teacher: ModelSource | None = None, copy_reference: bool = True) -> Produced:
    """One model by its recipe: prepared (`prepare`), then calibrated (PTQ) or trained (fp32, QAT), distilling
    from `teacher` (default: the `reference`) when ``recipe.train.distill`` is on. `copy_reference=False`
    quantizes the reference itself (a caller that has no further use for the fp32 model)."""
    if recipe.fine_tunes and reference is None:
        raise ConfigError(f"a {recipe.mode.value} model starting from fp32 needs the trained fp32 reference")
    model, report = prepare(recipe, data.timesteps, reference, copy_reference)
    if recipe.mode is QuantMode.PTQ:
        assert recipe.calibration is not None  # Recipe checks it
        started = time.perf_counter()
        calibrate_model(model, data, recipe.calibration, runtime.device)
        return Produced(model, report, None, time.perf_counter() - started)
    result = train_model(model, data, recipe.train, runtime, teacher=teacher or reference)
    return Produced(model, report, result, result.train_seconds)


def reference_recipe(recipe: Recipe) -> Recipe:
    """The fp32 recipe a PTQ recipe starts from: the same network and training, no quantizer."""
    return Recipe(recipe.model, recipe.train)


def first_device(model: nn.Module, default: torch.device) -> torch.device:
    """Where `model`'s weights are (under torchrun an index-less accelerator became this rank's card)."""
    return next((p.device for p in model.parameters()), default)

