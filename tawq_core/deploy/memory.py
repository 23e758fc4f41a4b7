"""What a module keeps resident: every tensor or array reachable from it, counted once per storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import Tensor, nn

_MAX_DEPTH = 6  # containers nested deeper than this inside module attributes are not searched


def _arrays(value: Any, depth: int = 0) -> Iterator[Tensor | np.ndarray]:
    if isinstance(value, (Tensor, np.ndarray)):
        yield value
    elif depth < _MAX_DEPTH and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _arrays(item, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(value, dict):
        for item in value.values():
            yield from _arrays(item, depth + 1)
    elif depth < _MAX_DEPTH and hasattr(value, "__dict__") and not isinstance(value, (nn.Module, type)):
        yield from _arrays(vars(value), depth + 1)  # plain objects held as attributes (quantizers, caches)


def reachable_arrays(module: nn.Module) -> Iterator[tuple[str, Tensor | np.ndarray]]:
    """(where, array) for every parameter, buffer and array-valued attribute of every submodule."""
    for name, sub in module.named_modules(remove_duplicate=False):
        prefix = f"{name}." if name else ""
        for key, value in vars(sub).items():
            if key == "_modules":
                continue
            if key in ("_parameters", "_buffers"):
                for attr, t in value.items():
                    if t is not None:
                        yield f"{prefix}{attr}", t
                continue
            for array in _arrays(value):
                yield f"{prefix}{key}", array


def _storage(array: Tensor | np.ndarray) -> tuple[int, int]:
    """(address, bytes) of the memory behind `array` (its whole storage, not just the view)."""
    if isinstance(array, Tensor):
        storage = array.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    base = array
    while isinstance(base.base, np.ndarray):
        base = base.base
    return base.__array_interface__["data"][0], base.nbytes


def resident_bytes(module: nn.Module) -> int:
    """Bytes of every tensor/ndarray reachable from `module` (parameters, buffers, attributes, containers in
    attributes), each storage counted once. Measure after a forward so lazily built caches are included."""
    seen: dict[int, int] = {}
    for _, array in reachable_arrays(module):
        address, nbytes = _storage(array)
        if nbytes:
            seen[address] = max(seen.get(address, 0), nbytes)
    return sum(seen.values())
