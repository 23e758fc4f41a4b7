"""Knowledge distillation for QAT: the quantized student also matches the fp32 teacher's soft logits.

A low-bit network fine-tuned on labels alone relearns the task from one-hot targets; the fp32 model
of the same seed already knows which wrong classes are close, and its softened distribution carries
that. The loss is Hinton et al.'s: ``(1 - w) * CE(student, labels) + w * tau**2 * KL(p_teacher^tau ||
p_student^tau)``, where ``p^tau = softmax(logits / tau)``; the ``tau**2`` keeps the soft term's gradient
scale independent of tau. The teacher runs in eval mode under `torch.inference_mode` (no graph, no
gradients, its weights and buffers untouched); its logits are recomputed every step rather than cached
(benchmarks/README.md records the measurement: the teacher forward is a small share of a QAT step).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tawq_core.plugin_api.errors import ConfigError, ShapeError


class DistillationLoss:
    """``loss(student_logits, labels, teacher_logits)``: label loss mixed with the soft-target KL."""

    def __init__(self, label_loss: nn.Module, weight: float, temperature: float):
        self.label_loss, self.weight, self.temperature = label_loss, weight, temperature

    def __call__(self, student: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if teacher.shape != student.shape:
            raise ShapeError(f"teacher logits {tuple(teacher.shape)} do not match the student's "
                             f"{tuple(student.shape)}; the teacher must be trained on the same classes")
        tau = self.temperature
        soft = F.kl_div(F.log_softmax(student / tau, dim=1), F.log_softmax(teacher.float() / tau, dim=1),
                        reduction="batchmean", log_target=True) * tau * tau
        return (1.0 - self.weight) * self.label_loss(student, labels) + self.weight * soft


def teacher_logits(forward: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The teacher's logits from `forward()` without building a graph; cloned out of inference mode so
    the loss can keep them for its backward pass (inference tensors cannot be saved for backward)."""
    with torch.inference_mode():
        logits = forward()
    return logits.clone()


def check_teacher(teacher: nn.Module | None, student: nn.Module, distill: bool) -> None:
    """A teacher exactly when distillation is on, and never one that shares a tensor with the student
    (that tensor would be both trained and used as the frozen reference)."""
    if distill and teacher is None:
        raise ConfigError("distill is on but no teacher was given; pass teacher= (the fp32 model) or turn "
                          "distill off")
    if teacher is None:
        return
    if not distill:
        raise ConfigError("a teacher was given but distill is off; set distill=True in the TrainConfig")
    if not isinstance(teacher, nn.Module):
        raise ConfigError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    student_params = {id(p) for p in student.parameters()}
    if teacher is student or any(id(p) in student_params for p in teacher.parameters()):
        raise ConfigError("the distillation teacher shares parameters with the student; pass a separate copy "
                          "(e.g. copy.deepcopy of the fp32 model before quantizing)")


def load_teacher(path: Path, dataset: str, device: torch.device) -> nn.Module:
    """A distillation teacher rebuilt from its `tawq train` checkpoint; one trained on another dataset is
    refused (its classes would not be the student's)."""
    from tawq_core.training.checkpoint import build_from_checkpoint

    teacher, meta = build_from_checkpoint(path, device)
    if meta.get("dataset") not in (None, dataset):
        raise ConfigError(f"--distill-from {path}: the teacher was trained on {meta['dataset']!r}, not "
                          f"{dataset!r}; distill from a model of the same dataset")
    return teacher
