"""Event-camera and spiking-audio datasets read with tonic from a local folder: shd, nmnist, dvs-gesture,
cifar10-dvs. Samples are TEMPORAL: event counts binned into `timesteps` frames, ``[T, C, ...]``.

Each dataset lives in <data_dir>/<tonic class name>/ exactly as tonic lays it out after unpacking. The
files are checked here first; anything missing raises DatasetNotFound naming the path, the expected
layout and the source, and nothing is downloaded unless ``download=True`` (then tonic fetches it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Subset

from tawq_core import ConfigError, DatasetNotFound, DatasetSplits, Encoding, hookimpl

from .common import boolean, data_root, files_with_suffix, fraction, not_found, positive_int, reading, unreadable
from .event_layout import (
    Layout,
    check_reader_labels,
    digit_folder,
    gesture_file,
    layout_labels,
    named_class_folder,
    npy_header,
)

SHD_SOURCE = ("https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/ "
              "(tonic fetches https://zenkelab.org/datasets/shd_train.h5.zip and shd_test.h5.zip)")
SHD_KEYS = ("spikes/times", "spikes/units", "labels", "extra/keys", "extra/speaker")
SHD_CLASSES = 20
NMNIST_SOURCE = ("https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip; tonic fetches them "
                 "from https://data.mendeley.com/datasets/468j46mzdv)")
GESTURE_SOURCE = ("tonic's preprocessed .npy release: https://figshare.com/ndownloader/files/38022171 "
                  "(ibmGestureTrain.tar.gz) and https://figshare.com/ndownloader/files/38020584 "
                  "(ibmGestureTest.tar.gz); the original IBM .aedat release is not read")
CIFAR10DVS_SOURCE = ("tonic's AEDAT4 release https://figshare.com/ndownloader/files/38023437 (CIFAR10DVS.zip, "
                     "then unzip each <class>.zip inside it)")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _prepare(name: str, class_name: str, root: Path, download: bool, find_missing: Callable[[], Path | None],
             expected: str, source: str, splits: list[dict]) -> None:
    """Files present: go. Missing: DatasetNotFound, or let tonic download when asked, then re-check."""
    missing = find_missing()
    if missing is None:
        return
    if not download:
        raise not_found(name, missing, expected, source)
    from .event_readers import download_with_tonic

    download_with_tonic(name, class_name, root, splits)
    missing = find_missing()
    if missing is not None:
        raise not_found(name, missing, f"{expected} (tonic's download did not produce them)", source,
                        can_download=False)


def _size(name: str, size: int | tuple[int, int] | list[int], native: int) -> tuple[int, int]:
    """Frame resolution: one int (square) or (width, height), at most the sensor's native size."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2:
        raise ConfigError(f"dataset {name!r}: size must be an int or (width, height), got {size!r}")
    return tuple(positive_int(name, "size", v, native) for v in pair)


# -- SHD ---------------------------------------------------------------------------------------------
def _check_shd_file(path: Path) -> None:
    import h5py

    with reading("shd", path, SHD_SOURCE), h5py.File(path, "r") as handle:
        absent = [key for key in SHD_KEYS if key not in handle]
        if absent:
            raise unreadable("shd", path, f"HDF5 keys {absent} are missing", SHD_SOURCE)
        lengths = {key: len(handle[key]) for key in SHD_KEYS[:3]}
        if len(set(lengths.values())) != 1:
            raise unreadable("shd", path, f"inconsistent lengths {lengths}", SHD_SOURCE)
        labels = handle["labels"][()]
        if len(labels) and (labels.min() < 0 or labels.max() >= SHD_CLASSES):
            raise unreadable("shd", path, f"labels in [{labels.min()}, {labels.max()}], outside the "
                             f"{SHD_CLASSES} classes 0-{SHD_CLASSES - 1}", SHD_SOURCE)


def shd(*, data_dir: str | None = None, download: bool = False, timesteps: int = 100,
        channels: int = 140) -> DatasetSplits:
    """Spiking Heidelberg Digits: 20 spoken digits, 700 input channels summed in groups into `channels`.

    Each recording is binned into `timesteps` equal time bins (tonic ToFrame), giving [T, channels].
    """
    timesteps = positive_int("shd", "timesteps", timesteps)
    channels = positive_int("shd", "channels", channels, 700)
    if 700 % channels:
        raise ConfigError(f"dataset 'shd': channels must divide 700 (e.g. 700, 350, 140, 100), got {channels}")
    root = data_root(data_dir)
    files = [root / "SHD" / f"shd_{split}.h5" for split in ("train", "test")]
    expected = f"{files[0]} and {files[1]} (the unpacked HDF5 files)"
    _prepare("shd", "SHD", root, download, lambda: next((f for f in files if not f.is_file()), None),
             expected, SHD_SOURCE, [{"train": True}, {"train": False}])
    for path in files:
        _check_shd_file(path)
    from .event_readers import EventFrames, frame_transform, open_reader

    transform = frame_transform((700, 1, 1), (channels, 1), timesteps)
    train, test = (
        EventFrames("shd", open_reader("shd", "SHD", root, SHD_SOURCE, train=is_train), transform,
                    (timesteps, channels), str(path), SHD_SOURCE)
        for is_train, path in ((True, files[0]), (False, files[1])))
    return DatasetSplits(
        name="shd", train=train, test=test, num_classes=SHD_CLASSES, sample_shape=(channels,),
        encoding=Encoding.TEMPORAL, timesteps=timesteps,
        meta={"root": str(root / "SHD"), "source": SHD_SOURCE, "group": 700 // channels,
              "binning": f"tonic ToFrame n_time_bins={timesteps}, per recording"},
    )


# -- N-MNIST -----------------------------------------------------------------------------------------
def nmnist(*, data_dir: str | None = None, download: bool = False, timesteps: int = 10,
           first_saccade_only: bool = False) -> DatasetSplits:
    """N-MNIST: MNIST digits recorded by a moving ATIS camera, 34x34x2 frames."""
    timesteps = positive_int("nmnist", "timesteps", timesteps)
    first_saccade_only = boolean("nmnist", "first_saccade_only", first_saccade_only)
    root = data_root(data_dir)
    folders = [root / "NMNIST" / split for split in ("Train", "Test")]
    incomplete = lambda: next((folder / str(d) for folder in folders for d in range(10)
                               if not files_with_suffix(folder / str(d), ".bin")), None)
    expected = f"{folders[0]}/<0-9>/*.bin and {folders[1]}/<0-9>/*.bin (the unpacked Train.zip and Test.zip)"
    _prepare("nmnist", "NMNIST", root, download, incomplete, expected, NMNIST_SOURCE,
             [{"train": True}, {"train": False}])
    from .event_readers import EventFrames, frame_transform, open_reader

    transform = frame_transform((34, 34, 2), (34, 34), timesteps)
    splits = []
    for train, folder in zip((True, False), folders, strict=True):
        layout = Layout("nmnist", folder, ".bin", digit_folder, expected, NMNIST_SOURCE, record_bytes=5)
        labels = layout_labels(layout)
        reader = open_reader("nmnist", "NMNIST", root, NMNIST_SOURCE, train=train,
                             first_saccade_only=first_saccade_only)
        check_reader_labels(layout, labels, reader.data, reader.targets)
        splits.append(EventFrames("nmnist", reader, transform, (timesteps, 2, 34, 34), reader.data,
                                  NMNIST_SOURCE))
    return DatasetSplits(
        name="nmnist", train=splits[0], test=splits[1], num_classes=10, sample_shape=(2, 34, 34),
        encoding=Encoding.TEMPORAL, timesteps=timesteps,
        meta={"root": str(root / "NMNIST"), "source": NMNIST_SOURCE,
              "binning": f"tonic ToFrame n_time_bins={timesteps}, per recording"},
    )


# -- DVS Gesture -------------------------------------------------------------------------------------
def dvs_gesture(*, data_dir: str | None = None, download: bool = False, timesteps: int = 16,
                size: int | tuple[int, int] = 128) -> DatasetSplits:
    """IBM DVS Gesture: 11 hand gestures, 128x128x2 events, optionally downsampled to `size`."""
    timesteps = positive_int("dvs-gesture", "timesteps", timesteps)
    width, height = _size("dvs-gesture", size, 128)
    root = data_root(data_dir)
    folders = [root / "DVSGesture" / f"ibmGesture{split}" for split in ("Train", "Test")]
    incomplete = lambda: next((f for f in folders if not files_with_suffix(f, ".npy")), None)
    expected = (f"{folders[0]}/user<NN>_<lighting>/<label>.npy and the same under {folders[1].name} "
                "(the unpacked ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz)")
    _prepare("dvs-gesture", "DVSGesture", root, download, incomplete, expected, GESTURE_SOURCE,
             [{"train": True}, {"train": False}])
    from .event_readers import EventFrames, frame_transform, open_reader

    transform = frame_transform((128, 128, 2), (width, height), timesteps)
    splits = []
    for train, folder in zip((True, False), folders, strict=True):
        layout = Layout("dvs-gesture", folder, ".npy", gesture_file(11), expected, GESTURE_SOURCE, probe=npy_header)
        labels = layout_labels(layout)
        reader = open_reader("dvs-gesture", "DVSGesture", root, GESTURE_SOURCE, train=train)
        check_reader_labels(layout, labels, reader.data, reader.targets)
        splits.append(EventFrames("dvs-gesture", reader, transform, (timesteps, 2, height, width),
                                  reader.data, GESTURE_SOURCE))
    return DatasetSplits(
        name="dvs-gesture", train=splits[0], test=splits[1], num_classes=11, sample_shape=(2, height, width),
        encoding=Encoding.TEMPORAL, timesteps=timesteps,
        meta={"root": str(root / "DVSGesture"), "source": GESTURE_SOURCE,
              "binning": f"tonic ToFrame n_time_bins={timesteps}, per recording"},
    )


# -- CIFAR10-DVS -------------------------------------------------------------------------------------
def cifar10_dvs(*, data_dir: str | None = None, download: bool = False, timesteps: int = 16,
                size: int | tuple[int, int] = 128, train_fraction: float = 0.9) -> DatasetSplits:
    """CIFAR10-DVS: 10,000 recordings of CIFAR-10 images, 128x128x2, optionally downsampled to `size`.

    The release has no official split: per class, the first `train_fraction` of the files (sorted by
    name) train and the rest test, so the split is the same on every machine.
    """
    timesteps = positive_int("cifar10-dvs", "timesteps", timesteps)
    width, height = _size("cifar10-dvs", size, 128)
    train_fraction = fraction("cifar10-dvs", "train_fraction", train_fraction)
    if importlib.util.find_spec("aedat") is None:
        raise DatasetNotFound("dataset 'cifar10-dvs': reading its .aedat4 files needs the 'aedat' package; "
                              "install it with: pip install aedat")
    root = data_root(data_dir)
    folder = root / "CIFAR10DVS"
    incomplete = lambda: next(
        (folder / c for c in CIFAR10_CLASSES if not files_with_suffix(folder / c, ".aedat4")), None)
    expected = f"{folder}/<class>/*.aedat4 for the classes {', '.join(CIFAR10_CLASSES)}"
    _prepare("cifar10-dvs", "CIFAR10DVS", root, download, incomplete, expected, CIFAR10DVS_SOURCE, [{}])
    from .event_readers import EventFrames, frame_transform, open_reader

    layout = Layout("cifar10-dvs", folder, ".aedat4", named_class_folder(CIFAR10_CLASSES), expected,
                    CIFAR10DVS_SOURCE)
    labels = layout_labels(layout)
    reader = open_reader("cifar10-dvs", "CIFAR10DVS", root, CIFAR10DVS_SOURCE)
    check_reader_labels(layout, labels, reader.data, reader.targets)
    frames = EventFrames("cifar10-dvs", reader, frame_transform((128, 128, 2), (width, height), timesteps),
                         (timesteps, 2, height, width), reader.data, CIFAR10DVS_SOURCE)
    train_idx, test_idx = [], []
    for label in range(10):
        members = sorted((i for i, t in enumerate(reader.targets) if t == label), key=lambda i: reader.data[i])
        cut = round(train_fraction * len(members))
        train_idx += members[:cut]
        test_idx += members[cut:]
    return DatasetSplits(
        name="cifar10-dvs", train=Subset(frames, train_idx), test=Subset(frames, test_idx), num_classes=10,
        sample_shape=(2, height, width), encoding=Encoding.TEMPORAL, timesteps=timesteps,
        meta={"root": str(folder), "source": CIFAR10DVS_SOURCE,
              "split": f"per class, first {train_fraction:g} of the files sorted by name train",
              "binning": f"tonic ToFrame n_time_bins={timesteps}, per recording"},
    )


@hookimpl
def tawq_register_datasets(register):
    register("shd", shd)
    register("nmnist", nmnist)
    register("dvs-gesture", dvs_gesture)
    register("cifar10-dvs", cifar10_dvs)
