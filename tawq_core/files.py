"""Files written whole or not at all: the one atomic write and the one JSON writer of tawq.

Checkpoints, exported graphs, bench results, summaries and dataset caches are all written to a
temporary file in the target's folder, flushed to disk (``fsync``), moved over the target with
`os.replace` and the folder entry flushed too. An interrupted write (Ctrl-C, SIGKILL, a full disk, a
power cut) therefore leaves either the old file or the new one under the real name, never half of one,
and a reader never sees a partial file. A failed write becomes one line naming the file (a
`ConfigError`), unless the caller asks for its own wording or for the plain `OSError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tawq_core.plugin_api.errors import ConfigError

#: Permissions of every file written here: what `open()` gives under the usual umask (mkstemp's 0600 would
#: make shared results and caches unreadable to the rest of a group).
FILE_MODE = 0o644

OnError = Callable[[Path, OSError], Exception]


def cannot_write(path: Path, exc: OSError) -> ConfigError:
    """The default wording of a failed write: what failed and what to do."""
    return ConfigError(f"cannot write {path}: {exc.strerror or exc}; choose a writable directory")


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable. Some file systems (and Windows) cannot open or sync a folder; there
    the rename has still happened, only its durability across a power cut is the file system's."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, on_error: OnError | None = cannot_write) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; on success it replaces `path` in one step.

    The folder is created if needed. On any exception the temporary file is removed and `path` keeps its
    old content; an `OSError` (full disk, read-only folder) is raised as ``on_error(path, exc)``, or as is
    when `on_error` is None.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb+") as handle:  # the bytes must be on disk before the name points at them
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_folder(target.parent)
    except OSError as exc:
        if on_error is None:
            raise
        raise on_error(target, exc) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, on_error: OnError | None = cannot_write) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path written."""
    with atomic_path(path, on_error=on_error) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_text(data: Any) -> str:
    """The one JSON form of tawq's files: indented, keys sorted (diffable), non-JSON objects (paths, enums)
    as their ``str``; NaN and infinity are refused (`ValueError`) because strict JSON readers reject them."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n"


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, on_error: OnError | None = cannot_write) -> Path:
    """Write `data` as JSON (`json_text`) atomically; a refused value raises before anything is written."""
    return write_text_atomic(path, json_text(data), on_error=on_error)
