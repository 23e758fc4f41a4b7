"""Conformance checks for plugin authors: does a quantizer, neuron, model, dataset or backend meet its contract?

Use them in a plugin's own tests (``pytest``) and from the command line (``tawq plugins --check``)::

    from tawq_core.testing import check_quantizer

    def test_my_quantizer():
        check_quantizer("my-quant")          # a registered name, a factory, a class or an instance
        check_quantizer(MyQuant, bits=3)     # options go to the factory as keyword arguments

Each check raises `ConformanceError` (an ``AssertionError``) whose message is one line naming the plugin
and what broke, e.g. ``quantizer 'pow2' from distribution tawq-pow2 0.1: unpack(pack(w)) differs from
weights(w) at shape (6, 5), T=1 (max abs difference 0.002); ...``; on success it returns a
`CheckReport` listing what was checked and what could not be checked here (`notes`). The contract
itself is in docs/plugins.md.
"""

from tawq_core.testing.backend import check_backend
from tawq_core.testing.dataset import check_dataset
from tawq_core.testing.model import check_model
from tawq_core.testing.neuron import check_neuron
from tawq_core.testing.quantizer import check_quantizer
from tawq_core.testing.registered import Outcome, check_registered
from tawq_core.testing.subject import CheckReport, ConformanceError

__all__ = [
    "CheckReport",
    "ConformanceError",
    "Outcome",
    "check_backend",
    "check_dataset",
    "check_model",
    "check_neuron",
    "check_quantizer",
    "check_registered",
]
