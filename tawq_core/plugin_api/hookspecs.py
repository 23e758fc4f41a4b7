"""The hooks a tawq plugin can implement: one per kind of thing, one verb each.

Every hook receives ``register(name, factory)``. Calling it adds one named thing of that kind, so a
single plugin module can register several quantizers, or a quantizer and a neuron. A factory is a
callable taking keyword options and returning the instance (a class works).

A plugin module looks like this::

    from tawq_core import hookimpl

    @hookimpl
    def tawq_register_quantizers(register):
        register("my-quant", MyQuantizer)

and is listed under the ``tawq`` entry-point group of its distribution's ``pyproject.toml``. The
contract of each kind is in docs/plugins.md; `tawq_core.testing` checks a plugin against it, and
examples/tawq-example is a complete plugin to start from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "tawq"
ENTRY_POINT_GROUP = "tawq"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def tawq_register_quantizers(register: Register) -> None:
    """Register weight quantizers (factories returning `tawq_core.Quantizer`)."""


@hookspec
def tawq_register_neurons(register: Register) -> None:
    """Register spiking neurons (factories returning a multi-step `tawq_core.Neuron` module)."""


@hookspec
def tawq_register_backends(register: Register) -> None:
    """Register hardware backends (factories returning `tawq_core.Backend`)."""


@hookspec
def tawq_register_models(register: Register) -> None:
    """Register model factories (keyword options -> `torch.nn.Module` on [T, B, ...] input)."""


@hookspec
def tawq_register_datasets(register: Register) -> None:
    """Register dataset factories (keyword options -> `tawq_core.DatasetSplits`)."""


# kind (singular, as users type it) -> hook name
HOOK_FOR_KIND: dict[str, str] = {
    "quantizer": "tawq_register_quantizers",
    "neuron": "tawq_register_neurons",
    "backend": "tawq_register_backends",
    "model": "tawq_register_models",
    "dataset": "tawq_register_datasets",
}
KINDS: tuple[str, ...] = tuple(HOOK_FOR_KIND)
