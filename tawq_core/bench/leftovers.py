"""A bench run that fails before it finished anything leaves no folder behind.

`tawq bench` creates its run folder (and the shared cache folder) and writes ``config.json`` before the
dataset is loaded. When the run then fails (a missing dataset, a model that does not fit, Ctrl-C before
the first cell), an empty run folder would look like a run that exists; the next `ls results/` shows
one more directory with nothing in it. Folders this run created are removed again on failure when
they hold nothing but what `IGNORED` describes; anything else (a finished cell, a checkpoint) is kept.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: files that do not count as work: the run's config record and temporary files of cut writes
IGNORED_NAMES = ("config.json",)


def _holds_work(folder: Path) -> bool:
    for _parent, _dirs, names in os.walk(folder):
        if any(not (n in IGNORED_NAMES or n.startswith(".")) for n in names):
            return True
    return False


@contextmanager
def removed_if_unused(*folders: Path) -> Iterator[None]:
    """On any failure (Ctrl-C included), delete those of `folders` that did not exist before and hold no work."""
    created = [Path(f) for f in folders if not Path(f).exists()]
    try:
        yield
    except BaseException:
        for folder in created:
            if folder.is_dir() and not _holds_work(folder):
                shutil.rmtree(folder, ignore_errors=True)
        raise
