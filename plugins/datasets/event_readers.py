"""tonic's event-dataset readers kept offline, and the wrapper that turns their events into frames.

tonic decides whether to download by looking for the original archive beside the extracted files. The
subclasses here keep tonic's readers (file enumeration, decoding, labels) and replace only that check:
`neuromorphic` has verified the extracted files itself before it builds them, so no archive has to sit
beside the data and these readers never download. They keep tonic's class names because tonic puts a
dataset under <data_dir>/<ClassName>, so a tree that tonic downloaded is read as it is.

Imported lazily by `neuromorphic` (tonic takes about a second to import).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tonic import datasets as tonic_datasets
from tonic import transforms as tonic_transforms
from torch import Tensor
from torch.utils.data import Dataset

from tawq_core import DatasetNotFound

from .common import one_line, reading


class _FilesCheckedByTawq:
    def _check_exists(self) -> bool:
        return True  # the caller checked the extracted files; tonic would insist on the archive too


class SHD(_FilesCheckedByTawq, tonic_datasets.SHD):
    """tonic's Spiking Heidelberg Digits reader (shd_train.h5 / shd_test.h5), offline."""


class NMNIST(_FilesCheckedByTawq, tonic_datasets.NMNIST):
    """tonic's N-MNIST reader (Train/<digit>/*.bin, Test/<digit>/*.bin), offline."""


class DVSGesture(_FilesCheckedByTawq, tonic_datasets.DVSGesture):
    """tonic's DVS Gesture reader (ibmGestureTrain/userNN_lighting/<label>.npy), offline."""


class CIFAR10DVS(_FilesCheckedByTawq, tonic_datasets.CIFAR10DVS):
    """tonic's CIFAR10-DVS reader (<class>/*.aedat4), offline."""


OFFLINE = {cls.__name__: cls for cls in (SHD, NMNIST, DVSGesture, CIFAR10DVS)}


def tonic_class(class_name: str, offline: bool) -> type:
    """Our offline reader, or tonic's own class, which downloads and unpacks what is missing."""
    return OFFLINE[class_name] if offline else getattr(tonic_datasets, class_name)


def download_with_tonic(name: str, class_name: str, root: Path, splits: Sequence[dict]) -> None:
    """Let tonic fetch and unpack each split (download=True only); any failure is a DatasetNotFound."""
    cls = getattr(tonic_datasets, class_name)
    for kwargs in splits:
        try:
            cls(save_to=str(root), **kwargs)
        except Exception as exc:  # network, checksum and archive errors all mean the same to the user
            raise DatasetNotFound(
                f"dataset {name!r}: downloading with tonic into {root / class_name} failed "
                f"({type(exc).__name__}: {one_line(exc)}); check the network or place the files there by hand"
            ) from exc


def open_reader(name: str, class_name: str, root: Path, source: str, **kwargs) -> tonic_datasets.Dataset:
    """Build the offline reader; a malformed folder or file found while listing names its path."""
    with reading(name, root / class_name, source):
        return OFFLINE[class_name](save_to=str(root), **kwargs)


def frame_transform(sensor_size: tuple[int, int, int], size: tuple[int, int], timesteps: int) -> Callable:
    """tonic's Downsample (only when the size changes) then ToFrame into `timesteps` equal time bins.

    ToFrame with n_time_bins spans each recording from its first to its last event; like tonic, the
    bins are half-open, so events at the very last timestamp fall outside the last bin.
    """
    steps = []
    if tuple(size) != tuple(sensor_size[:2]):
        steps.append(tonic_transforms.Downsample(sensor_size=sensor_size, target_size=tuple(size)))
    steps.append(tonic_transforms.ToFrame(sensor_size=(*size, sensor_size[2]), n_time_bins=timesteps))
    return tonic_transforms.Compose(steps)


class EventFrames(Dataset):
    """A tonic reader plus a frame transform: items are (float32 [T, *sample_shape] event counts, label).

    Reading and framing run per item (lazily); a file that cannot be decoded, or holds events outside
    the sensor, raises DatasetNotFound naming that file.
    """

    def __init__(self, name: str, reader: tonic_datasets.Dataset, transform: Callable,
                 shape: tuple[int, ...], files: str | Sequence[str], source: str):
        self.name, self.reader, self.transform = name, reader, transform
        self.shape, self.files, self.source = tuple(shape), files, source

    def __len__(self) -> int:
        return len(self.reader)

    def file_of(self, index: int) -> str:
        return self.files if isinstance(self.files, str) else str(self.files[index])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        with reading(self.name, self.file_of(index), self.source):
            events, target = self.reader[index]
            frames = np.asarray(self.transform(events), dtype=np.float32)
            return torch.from_numpy(frames).reshape(self.shape), int(target)
