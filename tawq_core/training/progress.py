"""Progress bars that stay out of logs: tqdm on an interactive terminal, silence elsewhere.

Every long loop in tawq (training epochs and steps, bench cells) goes through `progress_bar`, so the
rule is in one place: ``progress=None`` means "on when stderr is a TTY", and under torchrun only rank
0 draws (N identical bars from N processes would garble the terminal).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

from tawq_core.training import distributed


def progress_enabled(progress: bool | None = None) -> bool:
    """Resolve a user's ``progress`` choice: None -> only when stderr is a terminal; never off rank 0."""
    if not distributed.is_main_process():
        return False
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool | None = None, **tqdm_kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled (a transparent pass-through) unless `progress_enabled(enabled)`."""
    tqdm_kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not progress_enabled(enabled), file=sys.stderr, **tqdm_kwargs)
