"""The plugin registry: entry points -> pluggy -> named factories, with failures isolated.

Built-ins (the ``tawq`` distribution) are found through the same ``tawq`` entry-point group as any
third-party plugin. Every entry point is imported and called on its own, so one broken plugin is
recorded with its distribution name and error while every other plugin keeps working: any exception,
SystemExit included, is caught there (`tawq_core.plugin_api.plugin_boundary`), and what plugin code prints while
loading never reaches stdout. A name registered by two third-party plugins is refused for both (the
winner must not depend on install order); a third party never shadows a built-in.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from tawq_core.plugin_api import hookspecs, plugin_boundary
from tawq_core.plugin_api.errors import ConfigError, PluginError, PluginNotFound
from tawq_core.plugin_api.plugin_boundary import BUILTIN_DISTRIBUTION


@dataclass(frozen=True)
class PluginEntry:
    """One registered thing: a named factory of some kind, and the distribution that provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    distribution: str
    version: str
    module: str
    entry_point: str = ""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why (shown by `tawq plugins`)."""

    distribution: str
    version: str
    entry_point: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.entry_point!r} from distribution {self.distribution} {self.version}: {self.error}"


def _normal(name: str) -> str:
    """Distribution names compare as pip does: case-insensitive, runs of -_. alike (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(var: str) -> set[str]:
    return {_normal(part.strip()) for part in os.environ.get(var, "").split(",") if part.strip()}


def _third_party(ep: EntryPoint) -> bool:
    return _dist_of(ep)[0].lower() != BUILTIN_DISTRIBUTION


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
        self.unknown_selection: list[str] = []  # TAWQ_PLUGINS / TAWQ_DISABLE_PLUGINS names nothing has
        self.load_output: list[str] = []  # what working plugins printed while loading (`tawq plugins` shows it)
        self._refused: dict[str, dict[str, list[EntryPoint]]] = {kind: {} for kind in hookspecs.KINDS}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)

    # -- loading ---------------------------------------------------------------------------------
    def _selected_entry_points(self) -> list[EntryPoint]:
        eps = list(self._eps if self._eps is not None else entry_points(group=hookspecs.ENTRY_POINT_GROUP))
        only, blocked = _env_list("TAWQ_PLUGINS"), _env_list("TAWQ_DISABLE_PLUGINS")
        known = {_normal(_dist_of(ep)[0]) for ep in eps}
        for var, names in (("TAWQ_PLUGINS", only), ("TAWQ_DISABLE_PLUGINS", blocked)):
            for name in sorted(names - known):
                self.unknown_selection.append(f"{var} names {name!r}, but no installed distribution provides "
                                              f"tawq plugins under that name (installed: {', '.join(sorted(known))})")
        chosen = []
        for ep in eps:
            dist = _normal(_dist_of(ep)[0])
            builtin = dist == BUILTIN_DISTRIBUTION
            if dist in blocked or (only and not builtin and dist not in only):
                self.skipped.append(f"{ep.name} ({dist}): disabled by TAWQ_PLUGINS/TAWQ_DISABLE_PLUGINS")
                continue
            chosen.append(ep)
        # built-ins first, so a third-party plugin can never shadow a built-in name
        chosen.sort(key=lambda ep: _dist_of(ep)[0].lower() != BUILTIN_DISTRIBUTION)
        return chosen

    def _keep_output(self, ep: EntryPoint, output: plugin_boundary.LoadOutput) -> None:
        if output.text.strip():
            dist, version = _dist_of(ep)
            self.load_output.append(f"{ep.name} ({dist} {version}) printed while loading: "
                                    f"{' | '.join(output.text.strip().splitlines())}")

    def _fail(self, ep: EntryPoint, error: BaseException | str) -> None:
        dist, version = _dist_of(ep)
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.failures.append(PluginFailure(dist, version, ep.name, text))

    def _register_module(self, ep: EntryPoint) -> Any | None:
        with plugin_boundary.loading(capture=_third_party(ep)) as output:
            try:
                module = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: B036 - any import-time error, sys.exit() included
                self._fail(ep, plugin_boundary.load_failure(exc, output))
                return None
        self._keep_output(ep, output)
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

    def _clash(self, kind: str, name: str, taken: PluginEntry, ep: EntryPoint) -> None:
        """Two third-party plugins want one name: refuse both, whichever was installed first."""
        dist = _dist_of(ep)[0]
        if taken.distribution.lower() == BUILTIN_DISTRIBUTION:
            self._fail(ep, f"{kind} name {name!r} is already registered by {taken.distribution} "
                           f"({taken.module}); this registration was ignored")
            return
        self._refused[kind][name] = [ep]
        del self._entries[kind][name]  # the first claimant loses its registration too
        first, second = sorted([f"entry point {taken.entry_point!r} of {taken.distribution}",
                                f"entry point {ep.name!r} of {dist}"])  # the same words in any install order
        reason = (f"{kind} name {name!r} is registered by both {first} and {second}; both registrations were "
                  "refused (rename one, or disable one distribution with TAWQ_DISABLE_PLUGINS)")
        self.failures.append(PluginFailure(taken.distribution, taken.version, taken.entry_point, reason))
        self._fail(ep, reason)

    def _call_hook(self, kind: str, hook: Callable[..., None], ep: EntryPoint) -> None:
        dist, version = _dist_of(ep)

        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name or name != name.lower() or " " in name:
                raise PluginError(f"invalid {kind} name {name!r}: use lowercase words joined by hyphens")
            if not callable(factory):
                raise PluginError(f"{kind} {name!r}: factory {factory!r} is not callable")
            taken = self._entries[kind].get(name)
            if taken is not None:
                self._clash(kind, name, taken, ep)
                return
            if name in self._refused[kind]:
                self._refused[kind][name].append(ep)
                self._fail(ep, f"{kind} name {name!r} is claimed by several third-party plugins; "
                               "this registration was refused too")
                return
            module = getattr(factory, "__module__", ep.value)
            self._entries[kind][name] = PluginEntry(kind, name, factory, dist, version, module, ep.name)

        with plugin_boundary.loading(capture=_third_party(ep)) as output:
            try:
                hook(register=register)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: B036 - sys.exit() in a hook must not end tawq either
                self._fail(ep, f"raised in {kind} hook: {plugin_boundary.load_failure(exc, output)}")
                return
        self._keep_output(ep, output)

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


def loaded_registry() -> Registry | None:
    """The process-wide registry if something has loaded it already (error reporting must not load it)."""
    return _default


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
