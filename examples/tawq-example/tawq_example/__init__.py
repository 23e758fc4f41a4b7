"""A complete third-party tawq plugin: one quantizer, one neuron and one dataset.

This module is the entry point listed in pyproject.toml (``[project.entry-points.tawq]``): tawq
imports it and calls each hook with ``register(name, factory)``.
"""

from tawq_core import hookimpl
from tawq_example.dataset import pulses
from tawq_example.neuron import IntegrateFire
from tawq_example.quantizer import PowerOfTwo


@hookimpl
def tawq_register_quantizers(register):
    register("example-pow2", PowerOfTwo)


@hookimpl
def tawq_register_neurons(register):
    register("example-if", IntegrateFire)


@hookimpl
def tawq_register_datasets(register):
    register("example-pulses", pulses)
