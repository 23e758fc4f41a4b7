"""Non-finite numbers during training, caught where they enter: the input batch and the weights after a step.

The loss check alone misses the worst case: one NaN pixel in one sample turns the stem's weights and
BatchNorm statistics into NaN, the spiking neurons then never fire, the logits become constant and
the loss stays finite, so training "succeeds" at chance accuracy. Here:

* every batch is checked on the host, before it is copied to the device (no device synchronisation);
  a bad batch names the sample's index in the training set (the sampler's order is reproducible);
* the weights and buffers are checked after optimizer steps: every step on CPU (one pass over the
  weights, cheap next to the step), every `DEVICE_EVERY` steps and at the end of each epoch elsewhere,
  with one stacked reduction and one host read per check, so accelerators are not synchronised per step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from tawq_core.finite import counts, describe
from tawq_core.plugin_api.errors import ConfigError, TrainingDiverged

#: On accelerators, the weights are checked every this many optimizer steps (and at each epoch's end).
DEVICE_EVERY = 16


def _dataset_index(dataset: Dataset, index: int) -> tuple[int, Dataset]:
    """Follow `Subset` wrappers (validation hold-out, CIFAR10-DVS splits) to the index in the base dataset."""
    while isinstance(dataset, Subset):
        index, dataset = int(dataset.indices[index]), dataset.dataset
    return index, dataset


def check_batch(x: Tensor, sampler: Iterable[int] | None, step: int, batch_size: int, train_set: Dataset,
                dataset_name: str | None, role: str = "training") -> None:
    """Refuse a batch holding NaN/inf, naming the first bad sample's index in the dataset (`role`: which use).

    `sampler` yields this epoch's order for this rank (re-iterating a seeded sampler after ``set_epoch``
    gives the same order; read only on failure): batch `step` (1-based) holds
    ``order[(step - 1) * batch_size:][:len(x)]``."""
    if not x.is_floating_point() or bool(torch.isfinite(x).all()):
        return
    order = list(sampler) if sampler is not None else None
    row = int((~torch.isfinite(x)).reshape(len(x), -1).any(dim=1).nonzero()[0])
    where = f"{role} batch {step}, row {row}"
    if order is not None and (step - 1) * batch_size + row < len(order):
        index, base = _dataset_index(train_set, order[(step - 1) * batch_size + row])
        where = f"{role} sample {index}" + (f" (of {type(base).__name__})" if base is not train_set else "")
    prefix = f"dataset {dataset_name!r}: " if dataset_name else ""
    raise ConfigError(f"{prefix}{where} holds NaN/inf ({counts(x[row])}); "
                      f"fix or remove that sample (tawq does not {'train on' if role == 'training' else 'score'} "
                      "non-finite inputs)")


class WeightWatch:
    """Checks that a model's parameters and buffers stay finite after optimizer steps (see module doc)."""

    def __init__(self, model: nn.Module, device: torch.device, advice: str):
        self.model, self.advice = model, advice
        self.every = 1 if device.type == "cpu" else DEVICE_EVERY

    def after_step(self, step: int, epoch: int, epochs: int, end_of_epoch: bool = False) -> None:
        if end_of_epoch or step % self.every == 0:
            self.check(f"after step {step} of epoch {epoch}/{epochs}")

    def check(self, when: str) -> None:
        tensors = [(n, t) for n, t in [*self.model.named_parameters(), *self.model.named_buffers()]
                   if t.is_floating_point() and t.numel()]
        if not tensors:
            return
        flags = torch.stack([torch.isfinite(t).all() for _, t in tensors])
        if bool(flags.all()):  # one host read for all tensors
            return
        name, bad = tensors[int((~flags).nonzero()[0])]
        raise TrainingDiverged(f"training diverged: weight {describe(name, bad)} became non-finite {when}; "
                               f"{self.advice}")
