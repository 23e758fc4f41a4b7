"""No command writes over a file it reads: an output that is one of the inputs is refused in one line.

``tawq export RUN --format tawq --out RUN/model.safetensors`` would otherwise replace the QAT
checkpoint (latent weights, training record) with an inference-only file, and report success. Paths
are compared as real files: `os.path.samefile` sees through symlinks, ``..``, relative paths and hard
links (same device and inode), so no spelling of the same file gets past it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tawq_core.plugin_api.errors import ConfigError


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when `a` and `b` name one existing file (through links); a path that does not exist yet is
    never the same as another file, so writing it cannot destroy one."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwrite(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], flag: str) -> None:
    """`ConfigError` when `output` (written through `flag`) is the same real file as one of `inputs`."""
    for source in inputs:
        if same_file(output, source):
            shown = f"{output}" if Path(output).resolve() == Path(source).resolve() else f"{output} (= {source})"
            raise ConfigError(f"{flag} {shown} is an input of this command; writing it would destroy what is "
                              f"being read: choose another {flag} path")
