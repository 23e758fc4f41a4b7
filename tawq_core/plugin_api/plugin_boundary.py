"""The one boundary around plugin code: at load time and while tawq runs it (train, bench, export).

Why a boundary and not try/except at each call: plugin code runs deep inside tawq (a quantizer's
`weights` inside a layer's forward inside a training step), so the place that catches is far from the
place that failed. Load time wraps each import and hook call (`loading`); at run time the traceback
says whose code raised (`blame`): the innermost frame in a third-party plugin's package names the
plugin, its kind and distribution, and the CLI prints that as one line (``--debug``: the traceback).
Errors inside tawq itself or a built-in plugin keep their traceback: they are tawq bugs.

Any exception counts, SystemExit included (a plugin calling ``sys.exit()`` must not end tawq with
exit 0); KeyboardInterrupt does not: Ctrl-C keeps meaning "stop".
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tawq_core.plugin_api.errors import PluginError

if TYPE_CHECKING:
    from tawq_core.plugin_api.registry import PluginEntry, Registry

BUILTIN_DISTRIBUTION = "tawq"
MAX_DETAIL = 300


class PluginFailed(PluginError):
    """Plugin code raised (or broke its contract) while tawq ran it; names the plugin and distribution."""

    def __init__(self, message: str, entry: PluginEntry | None = None):
        super().__init__(message)
        self.entry = entry


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, shortened: the CLI's one-line contract."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    if len(text) > MAX_DETAIL:
        text = text[: MAX_DETAIL - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe(entry: PluginEntry) -> str:
    """``quantizer 'x' from distribution d 1.0``: how every message names a plugin."""
    return f"{entry.kind} {entry.name!r} from distribution {entry.distribution} {entry.version}"


def is_third_party(entry: PluginEntry) -> bool:
    return entry.distribution.lower() != BUILTIN_DISTRIBUTION


class LoadOutput:
    """What plugin code wrote to stdout/stderr while loading (kept off tawq's machine-readable stdout)."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@contextlib.contextmanager
def loading(capture: bool = True) -> Iterator[LoadOutput]:
    """Run plugin import/hook code with stdout and stderr captured and ``sys.argv`` neutral.

    Captured rather than passed through: `tawq plugins --json` writes JSON to stdout alone, an error
    stays one line on stderr, and a plugin parsing arguments at import must see none of tawq's (else it
    prints its usage for them). The registry keeps what a working plugin printed; `tawq plugins` shows it.
    `capture=False` (tawq's own built-ins) lets their warnings reach the user as usual.
    """
    output = LoadOutput()
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        if not capture:
            yield output
            return
        with contextlib.redirect_stdout(output.buffer), contextlib.redirect_stderr(output.buffer):
            yield output
    finally:
        sys.argv = argv


def load_failure(exc: BaseException, output: LoadOutput) -> str:
    """The failure text for an exception raised while loading plugin code (output hidden, counted)."""
    text = one_line(exc)
    written = output.text.strip()
    if written:
        text += f" (its {len(written)} characters of output were not shown)"
    return text


# -- run time ------------------------------------------------------------------------------------

def _frames(exc: BaseException) -> list[tuple[Any, int]]:
    """Frames of `exc` and of the exceptions it was raised *from*, innermost first.

    Not those it was raised *during* (``__context__``): tawq code failing while it handles a plugin's
    error is tawq's bug, not the plugin's."""
    frames: list[tuple[Any, int]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames.extend(reversed(list(traceback.walk_tb(current.__traceback__))))
        current = current.__cause__
    return frames


def _package(module: str) -> str:
    return module.split(".", 1)[0]


def _owner_in_package(entries: list[PluginEntry], frame: Any) -> PluginEntry:
    """Of the plugins one package provides, the one whose code this frame is (else the first)."""
    this = frame.f_locals.get("self")
    for entry in entries:
        if isinstance(entry.factory, type) and this is not None and isinstance(this, entry.factory):
            return entry
        if getattr(entry.factory, "__code__", None) is frame.f_code:
            return entry
    return entries[0]


def blame(exc: BaseException, registry: Registry | None = None) -> PluginEntry | None:
    """The third-party plugin whose code raised `exc`, or None (tawq's own code, or no plugin)."""
    if isinstance(exc, PluginFailed):
        return exc.entry
    from tawq_core.plugin_api.registry import loaded_registry

    registry = registry or loaded_registry()
    if registry is None:
        return None  # no plugin was loaded, so none can have raised
    packages: dict[str, list[PluginEntry]] = {}
    for entry in registry.entries():
        if is_third_party(entry):
            packages.setdefault(_package(entry.module), []).append(entry)
    if not packages:
        return None
    for frame, _ in _frames(exc):
        module = frame.f_globals.get("__name__", "")
        if _package(module) in packages:
            return _owner_in_package(packages[_package(module)], frame)
    return None


def plugin_failure(exc: BaseException, registry: Registry | None = None) -> PluginFailed | None:
    """`exc` as one `PluginFailed` line naming the plugin, if third-party plugin code raised it."""
    if isinstance(exc, PluginFailed):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return None
    entry = blame(exc, registry)
    if entry is None:
        return None
    where = ""
    for frame, lineno in _frames(exc):
        if _package(frame.f_globals.get("__name__", "")) == _package(entry.module):
            where = f" (in {frame.f_globals['__name__']}.{frame.f_code.co_name}, line {lineno})"
            break
    failed = PluginFailed(f"{describe(entry)} failed: {one_line(exc)}{where}", entry)
    failed.__cause__ = exc
    return failed


def owner_of(obj: object, kind: str, registry: Registry | None = None) -> PluginEntry | None:
    """The registered plugin of `kind` whose class `obj` is exactly (a subclass is someone else's code)."""
    from tawq_core.plugin_api.registry import get_registry

    registry = registry or get_registry()
    return next((entry for entry in registry.entries(kind) if entry.factory is type(obj)), None)


def label(obj: object, kind: str) -> str:
    """How a message names a plugin object: registered name and distribution, else its class."""
    entry = owner_of(obj, kind)
    if entry is not None:
        return describe(entry)
    cls = type(obj)
    return f"{kind} {cls.__name__} (module {cls.__module__}, not a registered plugin)"

