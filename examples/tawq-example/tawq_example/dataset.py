"""`example-pulses`: a synthetic temporal dataset (no files): which channel group pulses is the class."""

import torch
from torch.utils.data import TensorDataset

from tawq_core import DatasetSplits, Encoding


def _make(count, timesteps, channels, classes, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=g)
    x = (torch.rand(count, timesteps, channels, generator=g) < 0.1).float()  # background noise
    group = channels // classes
    for i, label in enumerate(labels.tolist()):
        x[i, :, label * group:(label + 1) * group] += (torch.rand(timesteps, group, generator=g) < 0.5).float()
    return TensorDataset(x.clamp_(max=1.0), labels)


def pulses(*, data_dir=None, download=False, timesteps: int = 8, channels: int = 12, classes: int = 3):
    """Generated in memory: `data_dir` and `download` are accepted (the dataset contract) and unused."""
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"example-pulses: timesteps must be a positive integer, got {timesteps!r}")
    return DatasetSplits(name="example-pulses", train=_make(96, timesteps, channels, classes, seed=0),
                         test=_make(48, timesteps, channels, classes, seed=1), num_classes=classes,
                         sample_shape=(channels,), encoding=Encoding.TEMPORAL, timesteps=timesteps,
                         meta={"generated": True})
