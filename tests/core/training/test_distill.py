"""Distillation: the loss falls, the teacher stays frozen (eval mode, inference mode, no gradients)."""

from __future__ import annotations

import copy

import pytest
import torch
from test_training import FAST, fresh_model, toy_splits
from torch import nn

from tawq_core import ConfigError, TrainConfig, quantize
from tawq_core.training.distill import DistillationLoss
from tawq_core.training.loop import train


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    model = fresh_model(1)
    train(model, toy_splits(), TrainConfig(**FAST), progress=False)
    model.zero_grad(set_to_none=True)  # its own training leaves the last step's gradients
    return model


def test_distilled_qat_student_learns_and_the_teacher_is_untouched(teacher):
    before = copy.deepcopy(teacher.state_dict())
    seen = []
    handle = teacher.register_forward_hook(
        lambda module, args, out: seen.append((module.training, torch.is_inference_mode_enabled(), out.requires_grad)))
    teacher.train()  # its mode on entry must come back afterwards
    student = fresh_model(0)
    quantize(student, "tawq", timesteps=2)
    config = TrainConfig(**FAST, distill=True, distill_weight=0.7, distill_temperature=3.0)
    try:
        result = train(student, toy_splits(), config, progress=False, teacher=teacher)
    finally:
        handle.remove()
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < 0.7 * losses[0] and result.test_accuracy >= 0.9
    assert seen and set(seen) == {(False, True, False)}  # eval mode, inference mode, no graph, every step
    assert teacher.training
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_distillation_loss_mixes_label_and_soft_terms():
    label = nn.CrossEntropyLoss()
    student = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    teacher, y = torch.tensor([[0.5, 1.0, -2.0]]), torch.tensor([0])
    assert torch.allclose(DistillationLoss(label, 0.0, 2.0)(student, y, teacher), label(student, y))
    assert DistillationLoss(label, 1.0, 2.0)(student, y, student.detach()).abs().item() < 1e-6  # KL(p || p) = 0
    mixed = DistillationLoss(label, 0.5, 4.0)(student, y, teacher)
    mixed.backward()
    assert student.grad is not None and not teacher.requires_grad


def test_teacher_and_distill_flag_must_agree(teacher):
    with pytest.raises(ConfigError, match="no teacher was given"):
        train(fresh_model(), toy_splits(), TrainConfig(**FAST, distill=True), progress=False)
    with pytest.raises(ConfigError, match="distill is off"):
        train(fresh_model(), toy_splits(), TrainConfig(**FAST), progress=False, teacher=teacher)
    with pytest.raises(ConfigError, match="shares parameters"):
        train(teacher, toy_splits(), TrainConfig(**FAST, distill=True), progress=False, teacher=teacher)


@pytest.mark.parametrize("option", [{"distill_weight": 1.5}, {"distill_temperature": 0}, {"distill": "yes"}])
def test_bad_distill_options_are_config_errors(option):
    with pytest.raises(ConfigError, match="distill"):
        TrainConfig(**option)
