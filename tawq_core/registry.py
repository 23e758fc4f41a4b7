"""The plugin registry: entry points -> pluggy -> named factories, with failures isolated.

Built-ins (the ``tawq`` distribution) are found through the same ``tawq`` entry-point group as any
third-party plugin. Every entry point is imported and called on its own, so one broken plugin is
recorded with its distribution name and error while every other plugin keeps working.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from tawq_core import hookspecs
from tawq_core.errors import ConfigError, PluginError, PluginNotFound

BUILTIN_DISTRIBUTION = "tawq"


@dataclass(frozen=True)
class PluginEntry:
    """One registered thing: a named factory of some kind, and the distribution that provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    distribution: str
    version: str
    module: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why (shown by `tawq plugins`)."""

    distribution: str
    version: str
    entry_point: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.entry_point!r} from distribution {self.distribution} {self.version}: {self.error}"


def _env_list(var: str) -> set[str]:
    return {part.strip().lower() for part in os.environ.get(var, "").split(",") if part.strip()}


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown>", "?"
    return dist.metadata["Name"] or "<unknown>", dist.version or "?"


class Registry:
    """Loads the ``tawq`` entry points once, on first use, and answers look-ups by kind and name."""

    def __init__(self, eps: Iterable[EntryPoint] | None = None):
        self._eps = eps
        self._loaded = False
        self._entries: dict[str, dict[str, PluginEntry]] = {kind: {} for kind in hookspecs.KINDS}
        self.failures: list[PluginFailure] = []
        self.skipped: list[str] = []
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)

    # -- loading ---------------------------------------------------------------------------------
    def _selected_entry_points(self) -> list[EntryPoint]:
        eps = list(self._eps if self._eps is not None else entry_points(group=hookspecs.ENTRY_POINT_GROUP))
        only, blocked = _env_list("TAWQ_PLUGINS"), _env_list("TAWQ_DISABLE_PLUGINS")
        chosen = []
        for ep in eps:
            dist = _dist_of(ep)[0].lower()
            builtin = dist == BUILTIN_DISTRIBUTION
            if dist in blocked or (only and not builtin and dist not in only):
                self.skipped.append(f"{ep.name} ({dist}): disabled by TAWQ_PLUGINS/TAWQ_DISABLE_PLUGINS")
                continue
            chosen.append(ep)
        # built-ins first, so a third-party plugin can never shadow a built-in name
        chosen.sort(key=lambda ep: _dist_of(ep)[0].lower() != BUILTIN_DISTRIBUTION)
        return chosen

    def _fail(self, ep: EntryPoint, error: BaseException | str) -> None:
        dist, version = _dist_of(ep)
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failures.append(PluginFailure(dist, version, ep.name, text))

    def _register_module(self, ep: EntryPoint) -> Any | None:
        try:
            module = ep.load()
        except Exception as exc:  # any import-time error of a plugin must not take tawq down
            self._fail(ep, exc)
            return None
        dist, _ = _dist_of(ep)
        plugin_name = f"{dist}:{ep.name}"
        if self.pm.is_registered(module):
            return None  # the same module listed under two entry points: register once
        try:
            self.pm.register(module, name=plugin_name)
            self.pm.check_pending()  # a misspelled hook name fails loudly, blaming this plugin
        except Exception as exc:
            if self.pm.get_plugin(plugin_name) is not None:
                self.pm.unregister(name=plugin_name)
            known = ", ".join(hookspecs.HOOK_FOR_KIND.values())
            self._fail(ep, f"{type(exc).__name__}: {exc} (known hooks: {known})")
            return None
        return module

    def load(self) -> Registry:
        if self._loaded:
            return self
        self._loaded = True
        owners: dict[int, EntryPoint] = {}
        for ep in self._selected_entry_points():
            module = self._register_module(ep)
            if module is not None:
                owners[id(module)] = ep
        for kind, hook_name in hookspecs.HOOK_FOR_KIND.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                ep = owners[id(impl.plugin)]
                self._call_hook(kind, impl.function, ep)
        return self

    def _call_hook(self, kind: str, hook: Callable[..., None], ep: EntryPoint) -> None:
        dist, version = _dist_of(ep)

        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name or name != name.lower() or " " in name:
                raise PluginError(f"invalid {kind} name {name!r}: use lowercase words joined by hyphens")
            if not callable(factory):
                raise PluginError(f"{kind} {name!r}: factory {factory!r} is not callable")
            taken = self._entries[kind].get(name)
            if taken is not None:
                self._fail(ep, f"{kind} name {name!r} is already registered by {taken.distribution} "
                               f"({taken.module}); this registration was ignored")
                return
            module = getattr(factory, "__module__", ep.value)
            self._entries[kind][name] = PluginEntry(kind, name, factory, dist, version, module)

        try:
            hook(register=register)
        except Exception as exc:
            self._fail(ep, f"raised in {kind} hook: {type(exc).__name__}: {exc}")

    # -- look-ups --------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def entries(self, kind: str | None = None) -> list[PluginEntry]:
        kinds = [kind] if kind else list(hookspecs.KINDS)
        return [e for k in kinds for _, e in sorted(self._kind(k).items())]

    def entry(self, kind: str, name: str) -> PluginEntry:
        table = self._kind(kind)
        if name not in table:
            raise PluginNotFound(kind, name, sorted(table), self._failure_hint())
        return table[name]

    def _failure_hint(self) -> str:
        """A name may be missing because the plugin providing it failed to load: say so."""
        if not self.failures:
            return ""
        dists = ", ".join(sorted({f.distribution for f in self.failures}))
        return f"{len(self.failures)} plugin(s) failed to load (from {dists}); `tawq plugins` shows why"

    def create(self, kind: str, name: str, **options: Any) -> Any:
        factory = self.entry(kind, name).factory
        check_options(factory, options, f"invalid options for {kind} {name!r}")
        return factory(**options)

    def _kind(self, kind: str) -> dict[str, PluginEntry]:
        if kind not in self._entries:
            raise ConfigError(f"unknown plugin kind {kind!r}; kinds: {', '.join(hookspecs.KINDS)}")
        self.load()
        return self._entries[kind]


def check_options(factory: Callable[..., Any], options: dict[str, Any], what: str) -> None:
    """Option *names* against the factory's signature; a mismatch lists the options it accepts."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # builtins without a signature: let the call itself decide
    try:
        signature.bind(**options)
    except TypeError as exc:
        accepted = [p.name for p in signature.parameters.values()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise ConfigError(f"{what}: {exc}; accepted: {', '.join(accepted) or 'none'}") from None


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, created and loaded on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default.load()


def reset_registry() -> None:
    """Forget loaded plugins (tests, or after changing TAWQ_PLUGINS in-process)."""
    global _default
    _default = None


def list_plugins(kind: str) -> list[str]:
    """Names registered for `kind` (quantizer, neuron, backend, model, dataset), sorted."""
    return get_registry().names(kind)


def create(kind: str, name: str, **options: Any) -> Any:
    """Instantiate the plugin `name` of `kind` with keyword options; unknown names list the known ones."""
    return get_registry().create(kind, name, **options)
