"""Helpers for plugin authors: the public, stable building blocks the built-in plugins use too.

Why one module: a third-party quantizer that writes its own straight-through estimator as
``w + (q - w).detach()`` silently breaks the bit-exact ``unpack(pack(w)) == weights(w)`` contract
(``w + (q - w)`` is not ``q`` in floating point). Everything here is the one implementation tawq
itself uses, re-exported from where it lives, so plugins and built-ins cannot drift apart:

* quantizers: `straight_through` (STE that forwards exactly the quantized tensor), `check_timesteps`,
  `fan_in_dims` (per-output-channel reductions), `float32_weights` (quantizer maths in float32);
* packing: `pack_digits` / `unpack_digits` (base-K codes densely into bytes), `packed_size`,
  `pack_patterns` / `unpack_patterns` (per-weight T-step patterns through a codebook);
* neurons: `check_multistep` (time-major input check) and `NeuronDynamics` (the one description of a
  neuron's dynamics, returned by `Neuron.describe_dynamics`, read by the NIR/ONNX exporters);
* quantizers reading packed files back: `packed_checks` (building blocks of `Quantizer.check_packed`);
* CPU kernels: `njit` (numba's, degrading to uncached compilation where no cache can be written; None
  without numba), `UNAVAILABLE` (why numba is missing), `worker_pool` (the one pool of kernel threads)
  and `use_kernel` (a fast kernel or the eager path, recorded for provenance); numba is imported on
  the first access to `njit` or `UNAVAILABLE`, not with this module;
* datasets caching what they generate or download: `atomic_path` (a file appears whole or not at all);
* backends: `cpu_model_name`, `peak_memory_measurement` (the one definition of a peak-memory result).

The contract each kind must meet is in docs/plugins.md; `tawq_core.testing` checks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tawq_core import jit
from tawq_core.files import atomic_path
from tawq_core.jit import use_kernel, worker_pool
from tawq_core.measure.hardware import cpu_model_name
from tawq_core.nn import packed_checks
from tawq_core.nn.packing import pack_digits, pack_patterns, packed_size, unpack_digits, unpack_patterns
from tawq_core.plugin_api.backend import peak_memory_measurement
from tawq_core.plugin_api.neuron import NeuronDynamics, check_multistep
from tawq_core.plugin_api.quantizer import check_timesteps, fan_in_dims, float32_weights, straight_through

if TYPE_CHECKING:  # resolved on first use by `__getattr__` below
    from tawq_core.jit import UNAVAILABLE, njit

__all__ = [
    "UNAVAILABLE",
    "NeuronDynamics",
    "atomic_path",
    "check_multistep",
    "check_timesteps",
    "cpu_model_name",
    "fan_in_dims",
    "float32_weights",
    "njit",
    "pack_digits",
    "pack_patterns",
    "packed_checks",
    "packed_size",
    "peak_memory_measurement",
    "straight_through",
    "unpack_digits",
    "unpack_patterns",
    "use_kernel",
    "worker_pool",
]


def __getattr__(name: str) -> Any:
    """`njit` and `UNAVAILABLE` come from `tawq_core.jit` on first use, so importing the kit never imports numba."""
    if name in ("njit", "UNAVAILABLE"):
        return getattr(jit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
