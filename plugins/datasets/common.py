"""What every dataset plugin shares: where data lives, in-memory splits, and the one-line errors.

File-backed datasets check their files themselves before any third-party reader runs, so a missing or
broken file becomes a `DatasetNotFound` that names the path looked at, the expected layout and where
to obtain the files, instead of a download attempt or a traceback from deep inside h5py, numpy or tonic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tawq_core import ConfigError, DatasetNotFound

DATA_DIR_ENV = "TAWQ_DATA_DIR"
CACHE_DIR_ENV = "TAWQ_CACHE_DIR"
DOWNLOAD_HINT = "or pass download=True (--download) to fetch them"

# What readers raise on a corrupt or truncated file (aedat's decoder raises RuntimeError).
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, RuntimeError)


def data_root(data_dir: str | os.PathLike | None) -> Path:
    """The folder that holds one subfolder per dataset: the argument, else $TAWQ_DATA_DIR, else ./data."""
    raw = data_dir or os.environ.get(DATA_DIR_ENV) or "data"
    return Path(raw).expanduser().resolve()


def cache_dir(data_dir: str | os.PathLike | None, name: str) -> Path:
    """Where generated data is cached: <data_dir>/<name>, else $TAWQ_CACHE_DIR/<name>, else ~/.cache/tawq/<name>."""
    if data_dir:
        return Path(data_dir).expanduser().resolve() / name
    base = os.environ.get(CACHE_DIR_ENV)
    if base:
        return Path(base).expanduser().resolve() / name
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "tawq" / name


def one_line(text: object) -> str:
    """Collapse a third-party message onto one line (TawqError messages are single lines)."""
    return " ".join(str(text).split())


def not_found(name: str, looked_at: Path, expected: str, source: str, can_download: bool = True) -> DatasetNotFound:
    """Missing or incomplete files: the path looked at, what should be there, and where to get it."""
    hint = f"; {DOWNLOAD_HINT}" if can_download else ""
    return DatasetNotFound(
        f"dataset {name!r}: {looked_at} is missing or incomplete; expected {expected}; "
        f"get the files from {source}{hint}"
    )


def unreadable(name: str, path: str | os.PathLike, reason: object, source: str) -> DatasetNotFound:
    """A file exists but cannot be parsed: name it, so the user can replace exactly that file."""
    return DatasetNotFound(
        f"dataset {name!r}: cannot read {path} ({one_line(reason)}); the file is corrupt or truncated, "
        f"replace it with a fresh copy from {source}"
    )


@contextmanager
def reading(name: str, path: str | os.PathLike, source: str) -> Iterator[None]:
    """Turn a reader's low-level failure on `path` into `unreadable(...)`."""
    try:
        yield
    except READ_ERRORS as exc:
        raise unreadable(name, path, f"{type(exc).__name__}: {exc}", source) from exc


def download_archive(name: str, url: str, root: Path, filename: str, md5: str) -> None:
    """Fetch, checksum and unpack one archive into `root` (only ever called for download=True)."""
    from tonic.download_utils import download_and_extract_archive

    try:
        download_and_extract_archive(url, str(root), filename=filename, md5=md5)
    except Exception as exc:  # network, checksum and archive errors all mean the same to the user
        raise DatasetNotFound(
            f"dataset {name!r}: downloading {url} into {root} failed ({type(exc).__name__}: {one_line(exc)}); "
            "check the network or place the unpacked files there by hand"
        ) from exc


def files_with_suffix(folder: Path, suffix: str) -> list[Path]:
    """Files under `folder` (recursively) ending in `suffix`, case-insensitive, sorted."""
    if not folder.is_dir():
        return []
    suffix = suffix.lower()
    found = []
    for parent, _dirs, names in os.walk(folder):
        found.extend(Path(parent, n) for n in names if n.lower().endswith(suffix))
    return sorted(found)


def positive_int(name: str, option: str, value: object, maximum: int | None = None) -> int:
    """Validate an integer option up front, so a bad value is a ConfigError and not a reader crash."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (maximum and value > maximum):
        upper = f" and <= {maximum}" if maximum else ""
        raise ConfigError(f"dataset {name!r}: {option} must be an integer >= 1{upper}, got {value!r}")
    return value


def boolean(name: str, option: str, value: object) -> bool:
    """Validate a flag option: "false" from a command line must not silently count as True."""
    if not isinstance(value, bool):
        raise ConfigError(f"dataset {name!r}: {option} must be true or false, got {value!r}")
    return value


def fraction(name: str, option: str, value: object) -> float:
    """Validate a share strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"dataset {name!r}: {option} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


class ArrayDataset(Dataset):
    """An in-memory split: float32 samples and integer labels, indexed as ``(sample, int label)``."""

    def __init__(self, x: Tensor, y: Tensor):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x = x.to(torch.float32).contiguous()
        self.y = y.to(torch.int64)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.x[index], int(self.y[index])

    @property
    def targets(self) -> list[int]:
        return self.y.tolist()


def class_counts(labels: Sequence[int], num_classes: int) -> list[int]:
    """Samples per class (used in `meta`, and by tests checking stratification)."""
    return torch.bincount(torch.as_tensor(list(labels), dtype=torch.int64), minlength=num_classes).tolist()
