"""What code a cached result came from: torch, each plugin's distribution and version, and its source.

A version string alone does not move while a plugin is developed (every edit of a built-in plugin is
still "tawq 0.1.0"), so a cache keyed on it would serve results of old code. The source hash covers
the module that defines the plugin's factory and every module of the same top-level package that it
uses, directly or through those modules (the tawq quantizer's calcium dynamics and their fused
kernels, a model's shared blocks), so an edit invalidates exactly the results that ran that code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
from functools import cache
from pathlib import Path

import torch

from tawq_core.plugin_api.registry import PluginEntry, get_registry


def _imports(name: str, source: bytes, is_package: bool) -> set[str]:
    """Every module name an ``import`` anywhere in `source` may refer to (function bodies included:
    lazily imported kernels count), relative imports resolved."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):  # a class imported from a module, not a module
        return None


def package_sources(module_name: str) -> dict[str, bytes]:
    """Source of `module_name` and of every module of its top-level package it imports, transitively."""
    root = module_name.partition(".")[0]
    found: dict[str, bytes] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        spec = _spec(name)
        if spec is None or not spec.origin or not spec.has_location:
            continue
        try:
            source = Path(spec.origin).read_bytes()
        except OSError as exc:
            source = f"<unreadable: {type(exc).__name__}>".encode()
        found[name] = source
        is_package = spec.submodule_search_locations is not None
        todo.extend(dep for dep in _imports(name, source, is_package)
                    if dep.partition(".")[0] == root and dep not in found)
    return dict(sorted(found.items()))


def source_digest(module_name: str) -> str:
    """SHA-256 over the names and sources of `package_sources(module_name)`."""
    h = hashlib.sha256()
    for name, source in package_sources(module_name).items():
        h.update(name.encode() + b"\0" + source + b"\0")
    return h.hexdigest()


def plugin(kind: str, name: str) -> dict[str, str]:
    """``{"distribution", "version", "source"}`` of one registered plugin."""
    return _entry_fingerprint(get_registry().entry(kind, name))


@cache
def _entry_fingerprint(entry: PluginEntry) -> dict[str, str]:
    """Once per registered entry and process: the code of a loaded module does not change under it."""
    module = getattr(entry.factory, "__module__", None) or entry.module
    return {"distribution": entry.distribution, "version": entry.version, "source": source_digest(module)}


def framework() -> dict[str, str]:
    """The versions every result depends on whichever plugins ran."""
    from tawq_core import __version__

    return {"tawq": __version__, "torch": torch.__version__}
