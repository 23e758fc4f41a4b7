"""The training loop on a tiny, separable synthetic task with a real spiking (LIF) network."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import tawq_core
from tawq_core import ConfigError, DatasetSplits, Encoding, ShapeError, TrainConfig, TrainingDiverged
from tawq_core.training.loop import evaluate, param_groups, seed_everything, train, warmup_cosine


def blobs(n: int, seed: int) -> TensorDataset:
    """Two well-separated Gaussian classes in 6-D: any working training loop reaches ~100 %."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centers = torch.tensor([[1.5] * 6, [-1.5] * 6])
    return TensorDataset(centers[y] + 0.7 * torch.randn(n, 6, generator=g), y)


def toy_splits(n_train: int = 192, n_test: int = 96) -> DatasetSplits:
    return DatasetSplits("blobs", blobs(n_train, 0), blobs(n_test, 1), num_classes=2, sample_shape=(6,))


class SpikingNet(nn.Module):
    """Linear -> LIF -> Linear on [T, B, 6]; logits averaged over time, as the model contract asks."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 16), nn.Linear(16, 2)
        self.lif = tawq_core.create("neuron", "lif")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif(self.fc1(x))).mean(0)


def fresh_model(seed: int = 0) -> SpikingNet:
    seed_everything(seed)
    return SpikingNet()


FAST = dict(epochs=4, batch_size=32, lr=2e-2, timesteps=2, warmup_epochs=1)


@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_loss_falls_and_accuracy_rises(grad_clip):
    model = fresh_model()
    before = evaluate(model, toy_splits().test, Encoding.STATIC, timesteps=2)
    result = train(model, toy_splits(), TrainConfig(**FAST, grad_clip=grad_clip), progress=False)
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.test_accuracy >= 0.95 > before
    assert result.steps == 4 * (192 // 32)
    assert result.world_size == 1 and result.eval_split == "test" and result.train_seconds > 0
    assert result.best_accuracy == max(r.eval_accuracy for r in result.history)
    assert result.test_accuracy == result.history[-1].eval_accuracy
    assert result.to_dict()["history"][0]["epoch"] == 1


def test_same_seed_gives_identical_weights_and_other_seed_does_not():
    config = TrainConfig(**FAST)
    states = []
    for model_seed, train_seed in [(0, 0), (0, 0), (0, 1)]:
        model = fresh_model(model_seed)
        train(model, toy_splits(), TrainConfig.from_dict({**config.to_dict(), "seed": train_seed}), progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


class NaNAfter(nn.Module):
    """Returns NaN logits from the `calls`-th training forward on: a deterministic divergence."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.fc, self.calls, self.seen = nn.Linear(6, 2), calls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x).mean(0)
        if self.training:
            self.seen += 1
            if self.seen >= self.calls:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_epoch_and_step():
    # 192 samples / batch 32 = 6 steps per epoch; the 9th forward is epoch 2, step 3
    with pytest.raises(TrainingDiverged, match=r"epoch 2/4, step 3/6.*lower the learning rate.*grad_clip"):
        train(NaNAfter(9), toy_splits(), TrainConfig(**FAST), progress=False)


def test_validation_split_is_held_out_from_training():
    result = train(fresh_model(), toy_splits(), TrainConfig(**FAST, val_fraction=0.25), progress=False)
    assert result.eval_split == "validation"
    assert result.steps == 4 * (144 // 32)  # 48 of 192 samples held out
    assert result.test_accuracy >= 0.9


def test_eval_every_zero_only_scores_the_test_set_at_the_end():
    result = train(fresh_model(), toy_splits(), TrainConfig(**FAST, eval_every=0), progress=False)
    assert all(r.eval_accuracy is None for r in result.history)
    assert result.best_accuracy == result.test_accuracy and result.eval_split == "test"


def test_on_epoch_callback_and_mode_restored():
    model, seen = fresh_model(), []
    model.eval()
    train(model, toy_splits(), TrainConfig(**{**FAST, "epochs": 2}), progress=False, on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2] and not model.training


def test_fine_tuning_continues_from_trained_weights():
    model = fresh_model()
    first = train(model, toy_splits(), TrainConfig(**FAST), progress=False)
    again = train(model, toy_splits(), TrainConfig(**{**FAST, "epochs": 1, "lr": 1e-3}), progress=False)
    assert again.history[0].train_loss < first.history[0].train_loss
    assert again.test_accuracy >= 0.95


@pytest.mark.parametrize("bad", [
    {"timesteps": 0}, {"timesteps": -1}, {"batch_size": 0}, {"epochs": 0}, {"lr": 0.0}, {"lr": float("nan")},
    {"weight_decay": -1.0}, {"label_smoothing": 1.0}, {"grad_clip": 0.0}, {"amp": "yes"}, {"seed": -1},
    {"num_workers": -1}, {"warmup_epochs": 5, "epochs": 4}, {"val_fraction": 1.0}, {"batch_size": 2.5},
])
def test_invalid_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown training option.*epoch_count"):
        TrainConfig.from_dict({"epoch_count": 3})


def test_run_time_errors_are_one_line_config_or_shape_errors():
    with pytest.raises(ConfigError, match="exceeds the 192 training samples"):
        train(fresh_model(), toy_splits(), TrainConfig(**{**FAST, "batch_size": 500}), progress=False)
    with pytest.raises(ConfigError, match="amp=True needs an accelerator"):
        train(fresh_model(), toy_splits(), TrainConfig(**FAST, amp=True), progress=False)
    temporal = DatasetSplits("seq", toy_splits().train, toy_splits().test, 2, (6,), Encoding.TEMPORAL, timesteps=5)
    with pytest.raises(ConfigError, match="set timesteps=5"):
        train(fresh_model(), temporal, TrainConfig(**FAST), progress=False)

    class PerStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)  # forgot to average over time: [T, B, 2]

    with pytest.raises(ShapeError, match=r"logits \[B, num_classes\]"):
        train(PerStep(), toy_splits(), TrainConfig(**FAST), progress=False)


def test_evaluate_counts_exactly_and_accepts_splits():
    class Sign(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.mean(0).sum(1, keepdim=True)
            return torch.cat([s, -s], 1)  # class 0 iff the sum is positive

    data = toy_splits().test
    x, y = data.tensors
    expected = float(((x.sum(1) <= 0).long() == y).float().mean())
    assert evaluate(Sign(), data, toy_splits(), timesteps=3, batch_size=7) == pytest.approx(expected)


def test_warmup_cosine_schedule_shape():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])


def test_weight_decay_spares_biases_and_scalars():
    decay, exempt = param_groups(SpikingNet(), 0.05)
    assert {p.dim() for p in decay["params"]} == {2} and decay["weight_decay"] == 0.05
    assert {p.dim() for p in exempt["params"]} == {1} and exempt["weight_decay"] == 0.0
