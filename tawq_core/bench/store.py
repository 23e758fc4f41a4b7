"""The run directory and the bench cache: atomic writes, finished work keyed by content hash.

Every file is written to a temporary name in the same directory and moved into place with
`os.replace`, so an interrupted run (Ctrl-C, SIGKILL, a full disk) leaves either the old file or the
new one, never half of one. A cache entry's JSON is written last: its presence means the work (and
any checkpoint it refers to) is complete, which is what lets a re-run skip it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tawq_core.errors import ConfigError

CACHE_DIR = "cache"


def write_error(path: Path, exc: OSError) -> ConfigError:
    """A failed write (disk full, permissions) as one line: what failed, that finished work is kept, what to do."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some disk space or pass --out DIR on another disk"
    else:
        todo = "pass --out DIR with a writable path"
    return ConfigError(f"cannot write {path} ({reason}); everything finished before is kept: {todo}, then re-run "
                       "the same command to resume")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one step.

    An `OSError` on the way (a full disk, a folder made read-only) leaves `path` as it was, removes the
    temporary file and becomes a one-line `ConfigError` (`write_error`).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:  # make the bytes durable before the rename
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def check_writable(directory: Path) -> None:
    """Fail up front, in one line, rather than after an hour of training."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"output directory {str(directory)!r} is not writable ({reason}); pass --out DIR with a writable path"
        ) from None


class RunStore:
    """Files of one run under ``root``, and the cache of finished work shared by every run under ``cache``:
    ``<cache>/<kind>/<key>.json`` plus checkpoints next to them.

    An entry is stored as ``{"kind", "key", "record"}``; one whose JSON is unreadable, whose kind or key
    is not the one asked for (a file copied or renamed by hand), or that lacks a field the caller
    needs is treated as absent and recomputed, never fatal.
    """

    def __init__(self, root: Path, cache: Path | None = None, writer: bool = True):
        self.root = Path(root)
        self.cache = Path(cache) if cache is not None else self.root / CACHE_DIR
        #: False on non-zero distributed ranks: they compute alongside rank 0 but never write.
        self.writer = writer

    def prepare(self) -> None:
        if self.writer:
            check_writable(self.root)
            check_writable(self.cache)

    def _entry(self, kind: str, key: str) -> Path:
        return self.cache / kind / f"{key}.json"

    def checkpoint_path(self, kind: str, key: str) -> Path:
        return self.cache / kind / f"{key}.safetensors"

    def get(self, kind: str, key: str, required: Iterable[str] = ()) -> dict[str, Any] | None:
        """A finished, valid entry, or None (then it is simply recomputed and overwritten)."""
        path = self._entry(kind, key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("kind") != kind or entry.get("key") != key:
            return None
        record = entry.get("record")
        if not isinstance(record, dict) or any(field not in record for field in required):
            return None
        return record

    def put(self, kind: str, key: str, record: dict[str, Any]) -> None:
        if self.writer:
            write_json_atomic(self._entry(kind, key), {"kind": kind, "key": key, "record": record})

    def write_json(self, name: str, data: Any) -> None:
        if self.writer:
            write_json_atomic(self.root / name, data)

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            write_text_atomic(self.root / name, text)
