"""Labels of folder-based event datasets decided by tawq from the documented layout, and empty files found early.

tonic's readers walk the whole tree and take a label from whatever the path happens to end with: for
N-MNIST the last character of the folder, so ``Train/3/old_copy_7/x.bin`` is silently a 7 and
``Train/10/x.bin`` a 0; CIFAR10-DVS the name of the innermost folder; DVS Gesture the file name.
Here every data file must sit exactly where the dataset's documentation puts it (e.g. N-MNIST:
``Train/<digit 0-9>/<name>.bin``, nothing deeper); anything else is refused in one line naming the
file, before training. The labels tonic then reads are compared with those of the layout.

Empty files (a copy cut short, a placeholder) and, where the record size is fixed (N-MNIST: 5 bytes
per event), files of a partial record are found here too, by their size: one ``stat`` per file,
far cheaper than decoding, so a bad file fails before training starts instead of hours into it.
DVS Gesture's .npy files (about 1,300) also have their header mapped, which finds truncated ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tawq_core import DatasetNotFound

from .common import reading, unreadable


@dataclass(frozen=True)
class Layout:
    """Where the files of one split live: `folder`, files ending in `suffix`, labelled by `label_of`.

    `label_of` gets a file's path parts relative to `folder` and returns its label, or None when the
    file is not where the layout puts files. `record_bytes` is the fixed size of one event record; `probe`,
    where one is cheap, reads a file's header (and raises what a reader would on a damaged file)."""

    name: str
    folder: Path
    suffix: str
    label_of: Callable[[tuple[str, ...]], int | None]
    expected: str
    source: str
    record_bytes: int | None = None
    probe: Callable[[Path], object] | None = None


def layout_labels(layout: Layout) -> dict[str, int]:
    """{file path: label} for every data file under ``layout.folder``; refuses misplaced, empty or partial files."""
    labels: dict[str, int] = {}
    for parent, dirs, names in os.walk(layout.folder):
        dirs.sort()
        for name in sorted(names):
            if not name.endswith(layout.suffix):
                continue
            path = Path(parent, name)
            label = layout.label_of(path.relative_to(layout.folder).parts)
            if label is None:
                raise DatasetNotFound(
                    f"dataset {layout.name!r}: {path} is not where the documented layout puts files "
                    f"({layout.expected}); tawq takes labels only from that layout: move or delete the file")
            size = path.stat().st_size
            if size == 0:
                raise unreadable(layout.name, path, "the file is empty (0 bytes)", layout.source)
            if layout.record_bytes and size % layout.record_bytes:
                raise unreadable(layout.name, path, f"{size} bytes is not a whole number of "
                                 f"{layout.record_bytes}-byte events", layout.source)
            if layout.probe is not None:
                with reading(layout.name, path, layout.source):
                    layout.probe(path)
            labels[os.path.normpath(path)] = label
    return labels


def check_reader_labels(layout: Layout, labels: dict[str, int], files: Sequence[str], targets: Sequence[int]) -> None:
    """tonic listed exactly the files of the layout, with the layout's labels (else refuse: never guess)."""
    listed = {os.path.normpath(f): int(t) for f, t in zip(files, targets, strict=True)}
    if listed != labels:
        differ = sorted(set(listed.items()) ^ set(labels.items()))
        path = differ[0][0] if differ else str(layout.folder)
        raise DatasetNotFound(f"dataset {layout.name!r}: the reader and the documented layout ({layout.expected}) "
                              f"disagree about {path}; tawq refuses to guess its label: move or delete the file")


def digit_folder(parts: tuple[str, ...]) -> int | None:
    """``<digit 0-9>/<file>``: N-MNIST's class folders directly under Train/ and Test/."""
    return int(parts[0]) if len(parts) == 2 and len(parts[0]) == 1 and parts[0].isdigit() else None


def named_class_folder(classes: Sequence[str]) -> Callable[[tuple[str, ...]], int | None]:
    """``<class name>/<file>``: CIFAR10-DVS's class folders, labelled by their position in `classes`."""
    return lambda parts: classes.index(parts[0]) if len(parts) == 2 and parts[0] in classes else None


def npy_header(path: Path) -> object:
    """Map a .npy file without reading its data: a truncated or foreign file fails here, in microseconds."""
    import numpy as np

    return np.load(path, mmap_mode="r", allow_pickle=False)


def gesture_file(num_classes: int) -> Callable[[tuple[str, ...]], int | None]:
    """``user<NN>_<lighting>/<label>.npy``: DVS Gesture's per-recording folders, one file per gesture."""

    def label_of(parts: tuple[str, ...]) -> int | None:
        if len(parts) != 2 or not parts[0].startswith("user") or "_" not in parts[0]:
            return None
        user, stem = parts[0][4:].split("_", 1)[0], parts[1][: -len(".npy")]
        if not user.isdigit() or not stem.isdigit() or str(int(stem)) != stem or int(stem) >= num_classes:
            return None
        return int(stem)

    return label_of
