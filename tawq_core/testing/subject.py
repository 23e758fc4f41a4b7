"""What a check is run on (a registered name, a factory, a class or an instance), and how it fails.

Every call into plugin code goes through `Subject.call`, so whatever the plugin raises (SystemExit
included) becomes one `ConformanceError` line naming the plugin and the step that broke.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from tawq_core.plugin_api.plugin_boundary import describe, one_line


class ConformanceError(AssertionError):
    """A plugin does not meet the contract of its kind; the message is one line naming what broke."""


@dataclass
class CheckReport:
    """What a passing check verified (`checks`) and what it could not verify here (`notes`)."""

    subject: str
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def passed(self, check: str) -> None:
        self.checks.append(check)


@dataclass
class Subject:
    kind: str
    label: str
    factory: Callable[..., Any]
    options: dict[str, Any]

    def fail(self, what: str) -> NoReturn:
        raise ConformanceError(f"{self.label}: {' '.join(what.split())}")

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run plugin code; anything it raises is a conformance failure of `what`."""
        try:
            return fn(*args, **kwargs)
        except (ConformanceError, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: B036 - sys.exit() in plugin code is a failure, not an exit
            self.fail(f"{what} raised {one_line(exc)}")

    def make(self, expected: type, **extra: Any) -> Any:
        obj = self.call("the factory", self.factory, **{**self.options, **extra})
        if not isinstance(obj, expected):
            self.fail(f"the factory returned {type(obj).__name__}, not a {expected.__module__}.{expected.__name__}")
        return obj

    def accepts(self, option: str) -> bool:
        """Whether the factory takes keyword `option` (or any keyword)."""
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):
            return True
        return any(p.name == option or p.kind is p.VAR_KEYWORD for p in params)

    def json(self, what: str, value: Any) -> None:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.fail(f"{what} is not JSON-serialisable ({exc})")


def resolve(kind: str, target: Any, base: type, options: dict[str, Any]) -> Subject:
    """A registered name, a factory, a class, or a ready instance of `base` -> a `Subject`."""
    from tawq_core.plugin_api.registry import get_registry

    registry = get_registry()
    if isinstance(target, str):
        entry = registry.entry(kind, target)
        return Subject(kind, describe(entry), entry.factory, dict(options))
    if isinstance(target, base):
        if options:
            raise ConformanceError(f"{kind} {type(target).__name__}: options are for factories, not instances")
        return Subject(kind, f"{kind} {type(target).__name__}", lambda **_: target, {})
    if not callable(target):
        raise ConformanceError(f"expected a {kind} factory, class, instance or registered name, got {target!r}")
    for entry in registry.entries(kind):
        if entry.factory is target:
            return Subject(kind, describe(entry), target, dict(options))
    name = getattr(target, "__qualname__", None) or repr(target)
    return Subject(kind, f"{kind} {name}", target, dict(options))
