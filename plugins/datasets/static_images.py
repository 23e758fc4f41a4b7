"""Static image datasets from local folders: cifar10, cifar100 (their binary releases) and imagenet.

CIFAR is read from the fixed-size binary records with numpy (memory-mapped, never the pickle release:
unpickling a downloaded file can run arbitrary code). ImageNet is an ImageFolder-style tree decoded
lazily with PIL, one image per item. Samples are STATIC ``[3, size, size]`` floats, direct-encoded.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from tawq_core import ConfigError, DatasetNotFound, DatasetSplits, Encoding, hookimpl

from .common import boolean, data_root, download_archive, not_found, positive_int, reading, unreadable

PIXELS = 3 * 32 * 32
CIFAR = {
    "cifar10": {"folder": "cifar-10-batches-bin", "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                "test": ["test_batch.bin"], "label_bytes": 1,
                "url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                "md5": "c32a1d4ab5d03f1284b67883e8d87530",
                "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)},
    "cifar100": {"folder": "cifar-100-binary", "train": ["train.bin"], "test": ["test.bin"], "label_bytes": 2,
                 "url": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                 "md5": "03b5dce01913d631647c71ecec9e9cb8",
                 "mean": (0.5071, 0.4865, 0.4409), "std": (0.2673, 0.2564, 0.2762)},
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_SOURCE = ("https://image-net.org/download.php (ILSVRC2012 train and val; val must be sorted into "
                   "<wnid>/ class folders like train); it cannot be downloaded automatically")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class ImageTransform:
    """[3, H, W] in [0, 1] -> (train) random crop with zero padding and horizontal flip, resize, normalize."""

    def __init__(self, size: int, mean: tuple | None, std: tuple | None, augment: bool, pad: int = 0):
        self.size, self.augment, self.pad = size, augment, pad
        self.mean = None if mean is None else torch.tensor(mean).view(3, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(3, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        if self.augment:
            if self.pad:
                h, w = x.shape[-2:]
                top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
                x = F.pad(x, (self.pad,) * 4)[:, top:top + h, left:left + w]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)[0]
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x


# -- CIFAR -------------------------------------------------------------------------------------------
class CifarBinary(Dataset):
    """Records of a CIFAR binary release: label byte(s) then 3072 channel-major pixels; memory-mapped."""

    def __init__(self, name: str, files: list[Path], label_bytes: int, label_index: int,
                 transform: ImageTransform, source: str):
        self.name, self.files, self.source = name, [str(f) for f in files], source
        self.label_bytes, self.label_index, self.transform = label_bytes, label_index, transform
        self.record = label_bytes + PIXELS
        counts = [os.path.getsize(f) // self.record for f in self.files]
        self.offsets = np.cumsum([0, *counts]).tolist()
        self._maps: list[np.memmap] | None = None

    def __getstate__(self) -> dict:  # worker processes map the files themselves
        return {**self.__dict__, "_maps": None}

    def _records(self, k: int) -> np.ndarray:
        if self._maps is None:
            self._maps = [np.memmap(f, np.uint8, "r").reshape(-1, self.record) for f in self.files]
        return self._maps[k]

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        index = index + len(self) if index < 0 else index
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} images")
        k = bisect_right(self.offsets, index) - 1
        row = np.array(self._records(k)[index - self.offsets[k]])
        x = torch.from_numpy(row[self.label_bytes:].reshape(3, 32, 32)).to(torch.float32).div_(255)
        return self.transform(x), int(row[self.label_index])

    @property
    def targets(self) -> list[int]:
        return [int(v) for k in range(len(self.files)) for v in self._records(k)[:, self.label_index]]


def _check_cifar_file(name: str, path: Path, record: int, label_index: int, num_classes: int,
                      source: str) -> None:
    size = path.stat().st_size
    if size == 0 or size % record:
        raise unreadable(name, path, f"{size} bytes is not a whole number of {record}-byte records", source)
    with reading(name, path, source):
        labels = np.memmap(path, np.uint8, "r").reshape(-1, record)[:, label_index]
        top = int(labels.max())
    if top >= num_classes:
        raise unreadable(name, path, f"label {top} is out of range for {num_classes} classes", source)


def _cifar(name: str, data_dir: str | None, download: bool, size: int, normalize: bool, augment: bool,
           label_index: int, num_classes: int) -> DatasetSplits:
    spec = CIFAR[name]
    size = positive_int(name, "size", size)
    normalize, augment = boolean(name, "normalize", normalize), boolean(name, "augment", augment)
    root = data_root(data_dir)
    folder = root / spec["folder"]
    source = f"{spec['url']} (unpack it into {root})"
    names = spec["train"] + spec["test"]
    if download and not all((folder / n).is_file() for n in names):
        download_archive(name, spec["url"], root, Path(spec["url"]).name, spec["md5"])
    missing = next((folder / n for n in names if not (folder / n).is_file()), None)
    if missing is not None:
        raise not_found(name, missing, f"{', '.join(names)} in {folder}", source, can_download=not download)
    record = spec["label_bytes"] + PIXELS
    for n in names:
        _check_cifar_file(name, folder / n, record, label_index, num_classes, source)
    mean, std = (spec["mean"], spec["std"]) if normalize else (None, None)
    train, test = (
        CifarBinary(name, [folder / n for n in spec[split]], spec["label_bytes"], label_index,
                    ImageTransform(size, mean, std, augment and split == "train", pad=4), source)
        for split in ("train", "test"))
    return DatasetSplits(
        name=name, train=train, test=test, num_classes=num_classes, sample_shape=(3, size, size),
        encoding=Encoding.STATIC,
        meta={"root": str(folder), "source": spec["url"], "normalization": "per-channel mean/std" if normalize
              else "[0, 1]", "augment": "random crop (pad 4) + horizontal flip on train" if augment else "none"},
    )


def cifar10(*, data_dir: str | None = None, download: bool = False, size: int = 32, normalize: bool = True,
            augment: bool = True) -> DatasetSplits:
    """CIFAR-10 (50,000 / 10,000 32x32 colour images, 10 classes) from cifar-10-batches-bin/."""
    return _cifar("cifar10", data_dir, download, size, normalize, augment, label_index=0, num_classes=10)


def cifar100(*, data_dir: str | None = None, download: bool = False, size: int = 32, normalize: bool = True,
             augment: bool = True, labels: str = "fine") -> DatasetSplits:
    """CIFAR-100 from cifar-100-binary/; labels 'fine' (100 classes) or 'coarse' (20 superclasses)."""
    if labels not in ("fine", "coarse"):
        raise ConfigError(f"dataset 'cifar100': labels must be 'fine' or 'coarse', got {labels!r}")
    fine = labels == "fine"
    return _cifar("cifar100", data_dir, download, size, normalize, augment, label_index=1 if fine else 0,
                  num_classes=100 if fine else 20)


# -- ImageNet ----------------------------------------------------------------------------------------
class ImageFolder(Dataset):
    """(path, label) pairs decoded on access with PIL: resize the short side, crop, flip, normalize."""

    def __init__(self, samples: list[tuple[str, int]], size: int, transform: ImageTransform, train: bool):
        self.samples, self.size, self.transform, self.train = samples, size, transform, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        short = self.size if self.train else round(self.size / 0.875)  # eval: resize 256, centre crop 224
        with reading("imagenet", path, IMAGENET_SOURCE), Image.open(path) as image:
            image = image.convert("RGB")
            scale = short / min(image.size)
            image = image.resize((max(short, round(image.width * scale)), max(short, round(image.height * scale))),
                                 Image.Resampling.BILINEAR)
        if self.train:
            left, top = (int(torch.randint(0, d - self.size + 1, ())) for d in image.size)
        else:
            left, top = ((d - self.size) // 2 for d in image.size)
        image = image.crop((left, top, left + self.size, top + self.size))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
        return self.transform(x), label

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]


def _scan_split(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    samples = []
    for label, wnid in enumerate(classes):
        if not (folder / wnid).is_dir():
            continue
        samples += [(entry.path, label) for entry in sorted(os.scandir(folder / wnid), key=lambda e: e.name)
                    if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)]
    return samples


def imagenet(*, data_dir: str | None = None, download: bool = False, size: int = 224, normalize: bool = True,
             augment: bool = True) -> DatasetSplits:
    """ILSVRC-2012 (or any ImageFolder tree) from <data_dir>/imagenet/{train,val}/<class>/<image>."""
    size = positive_int("imagenet", "size", size)
    normalize, augment = boolean("imagenet", "normalize", normalize), boolean("imagenet", "augment", augment)
    folder = data_root(data_dir) / "imagenet"
    expected = f"{folder}/train/<class>/<images> and {folder}/val/<class>/<images> with the same class folders"
    for split in ("train", "val"):
        if not (folder / split).is_dir():
            raise not_found("imagenet", folder / split, expected, IMAGENET_SOURCE, can_download=False)
    classes = sorted(entry.name for entry in os.scandir(folder / "train") if entry.is_dir())
    val_dirs = {entry.name for entry in os.scandir(folder / "val") if entry.is_dir()}
    if len(classes) < 2 or not val_dirs or not val_dirs <= set(classes):
        raise DatasetNotFound(
            f"dataset 'imagenet': {folder / 'val'} must hold class folders that also exist in {folder / 'train'} "
            f"(found {len(classes)} train and {len(val_dirs)} val class folders); sort the flat ILSVRC val images "
            "into <wnid>/ folders with the official labels (e.g. the widely used valprep.sh)")
    train, test = (_scan_split(folder / split, classes) for split in ("train", "val"))
    if not train or not test:
        raise not_found("imagenet", folder / ("val" if train else "train"), expected, IMAGENET_SOURCE,
                        can_download=False)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize else (None, None)
    return DatasetSplits(
        name="imagenet", num_classes=len(classes), sample_shape=(3, size, size), encoding=Encoding.STATIC,
        train=ImageFolder(train, size, ImageTransform(size, mean, std, augment), train=augment),
        test=ImageFolder(test, size, ImageTransform(size, mean, std, False), train=False),
        meta={"root": str(folder), "classes": classes, "source": IMAGENET_SOURCE},
    )


@hookimpl
def tawq_register_datasets(register):
    register("cifar10", cifar10)
    register("cifar100", cifar100)
    register("imagenet", imagenet)
