"""tawq: ultra-low-bit weight quantization for spiking neural networks.

The public API is what this module exports; everything else is internal and may change.

Importing tawq is cheap and changes nothing in the host process: each public name is imported from its
module on first use (PEP 562 ``__getattr__``), so ``import tawq_core`` does not import torch, training,
export, energy or the bench, and no environment variable is set. (torch auto-loads an installed
torch_npu at ``import torch``, which fails without Ascend CANN: the `tawq` command turns that off for its
own process; a program importing tawq on such a machine sets ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` itself,
see docs/backends.md.)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

#: module -> the public names it defines, for the lazy look-up (tests check that it, the imports for type
#: checkers below and `__all__` name the same things)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "tawq_core.backend": ("Availability", "Backend", "MeterReading", "Timer"),
    "tawq_core.calibration": ("calibrate",),
    "tawq_core.checkpoint": ("build_from_checkpoint", "load_checkpoint", "load_into", "save_checkpoint"),
    "tawq_core.data": ("DatasetFactory", "DatasetSplits", "Encoding", "encode_batch"),
    "tawq_core.deploy": ("deploy",),
    "tawq_core.energy": ("EnergyModel", "estimate_energy", "measure_energy"),
    "tawq_core.errors": ("BackendUnavailable", "CheckpointError", "ConfigError", "DatasetNotFound",
                         "MissingDependency", "PluginError", "PluginNotFound", "ShapeError", "TawqError",
                         "TrainingDiverged"),
    "tawq_core.export": ("export", "load_packed"),
    "tawq_core.hookspecs": ("hookimpl",),
    "tawq_core.latency": ("LatencyStats", "measure_latency"),
    "tawq_core.layers": ("QuantConv1d", "QuantConv2d", "QuantLinear"),
    "tawq_core.measurement": ("Measurement",),
    "tawq_core.model": ("ModelFactory",),
    "tawq_core.neuron": ("Neuron",),
    "tawq_core.quantization": ("QuantizeReport", "QuantPolicy", "SkipReason", "UnmarkedRule", "quantize",
                               "quantized_layers", "set_timesteps"),
    "tawq_core.quantizer": ("PackedWeight", "Quantizer", "QuantMode"),
    "tawq_core.registry": ("create", "get_registry", "list_plugins"),
    "tawq_core.resources": ("MemoryEstimate", "check_training_memory", "estimate_training_memory"),
    "tawq_core.roles": ("LayerRole", "mark", "role_of"),
    "tawq_core.sops": ("OpsCounter", "OpsReport", "count_ops"),
    "tawq_core.time_layout": ("stepwise",),
    "tawq_core.train_resume": ("ResumeFile",),
    "tawq_core.training": ("EpochRecord", "TrainConfig", "TrainResult", "evaluate", "seed_everything", "train"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what the names are, for type checkers and editors (tests check it matches _EXPORTS)
    from tawq_core.backend import Availability, Backend, MeterReading, Timer
    from tawq_core.calibration import calibrate
    from tawq_core.checkpoint import build_from_checkpoint, load_checkpoint, load_into, save_checkpoint
    from tawq_core.data import DatasetFactory, DatasetSplits, Encoding, encode_batch
    from tawq_core.deploy import deploy
    from tawq_core.energy import EnergyModel, estimate_energy, measure_energy
    from tawq_core.errors import (
        BackendUnavailable,
        CheckpointError,
        ConfigError,
        DatasetNotFound,
        MissingDependency,
        PluginError,
        PluginNotFound,
        ShapeError,
        TawqError,
        TrainingDiverged,
    )
    from tawq_core.export import export, load_packed
    from tawq_core.hookspecs import hookimpl
    from tawq_core.latency import LatencyStats, measure_latency
    from tawq_core.layers import QuantConv1d, QuantConv2d, QuantLinear
    from tawq_core.measurement import Measurement
    from tawq_core.model import ModelFactory
    from tawq_core.neuron import Neuron
    from tawq_core.quantization import (
        QuantizeReport,
        QuantPolicy,
        SkipReason,
        UnmarkedRule,
        quantize,
        quantized_layers,
        set_timesteps,
    )
    from tawq_core.quantizer import PackedWeight, Quantizer, QuantMode
    from tawq_core.registry import create, get_registry, list_plugins
    from tawq_core.resources import MemoryEstimate, check_training_memory, estimate_training_memory
    from tawq_core.roles import LayerRole, mark, role_of
    from tawq_core.sops import OpsCounter, OpsReport, count_ops
    from tawq_core.time_layout import stepwise
    from tawq_core.train_resume import ResumeFile
    from tawq_core.training import EpochRecord, TrainConfig, TrainResult, evaluate, seed_everything, train

    __version__: str

__all__ = [
    "Availability",
    "Backend",
    "BackendUnavailable",
    "CheckpointError",
    "ConfigError",
    "DatasetFactory",
    "DatasetNotFound",
    "DatasetSplits",
    "Encoding",
    "EnergyModel",
    "EpochRecord",
    "LatencyStats",
    "LayerRole",
    "Measurement",
    "MemoryEstimate",
    "MeterReading",
    "MissingDependency",
    "ModelFactory",
    "Neuron",
    "OpsCounter",
    "OpsReport",
    "PackedWeight",
    "PluginError",
    "PluginNotFound",
    "QuantConv1d",
    "QuantConv2d",
    "QuantLinear",
    "QuantMode",
    "QuantPolicy",
    "QuantizeReport",
    "Quantizer",
    "ResumeFile",
    "ShapeError",
    "SkipReason",
    "TawqError",
    "Timer",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "UnmarkedRule",
    "__version__",
    "build_from_checkpoint",
    "calibrate",
    "check_training_memory",
    "count_ops",
    "create",
    "deploy",
    "encode_batch",
    "estimate_energy",
    "estimate_training_memory",
    "evaluate",
    "export",
    "get_registry",
    "hookimpl",
    "list_plugins",
    "load_checkpoint",
    "load_packed",
    "load_into",
    "mark",
    "measure_energy",
    "measure_latency",
    "quantize",
    "quantized_layers",
    "role_of",
    "save_checkpoint",
    "seed_everything",
    "set_timesteps",
    "stepwise",
    "train",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tawq")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, then keep it here (later look-ups are plain)."""
    if name == "__version__":
        value: Any = _version()
    elif name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """`deploy` and `export` name both public functions and subpackages. Python sets a package's attribute
    to each subpackage it loads, which would replace the function once anything imported, say,
    ``tawq_core.deploy.forms``; here the function keeps the name (the subpackage stays in `sys.modules`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
