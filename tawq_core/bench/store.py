"""The run directory and the bench cache: atomic writes, finished work keyed by content hash.

Every file is written through `tawq_core.files` (temporary name in the same directory, fsync,
`os.replace`), so an interrupted run (Ctrl-C, SIGKILL, a full disk) leaves either the old file or the
new one, never half of one. A cache entry's JSON is written last: its presence means the work (and
any checkpoint it refers to) is complete, which is what lets a re-run skip it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tawq_core import files
from tawq_core.plugin_api.errors import ConfigError

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


def atomic_path(path: Path) -> contextlib.AbstractContextManager[Path]:
    """`tawq_core.files.atomic_path` whose failure says that finished work is kept (`write_error`)."""
    return files.atomic_path(path, on_error=write_error)


def write_text_atomic(path: Path, text: str) -> None:
    files.write_text_atomic(path, text, on_error=write_error)


def write_json_atomic(path: Path, data: Any) -> None:
    files.write_json_atomic(path, data, on_error=write_error)


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
