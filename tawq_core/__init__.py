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
    "tawq_core.deploy": ("deploy",),
    "tawq_core.export": ("export", "load_packed"),
    "tawq_core.measure.energy": ("EnergyModel", "estimate_energy", "measure_energy"),
    "tawq_core.measure.latency": ("LatencyStats", "measure_latency"),
    "tawq_core.measure.measurement": ("Measurement",),
    "tawq_core.measure.sops": ("OpsCounter", "OpsReport", "count_ops"),
    "tawq_core.nn.calibration": ("calibrate",),
    "tawq_core.nn.layers": ("QuantConv1d", "QuantConv2d", "QuantLinear"),
    "tawq_core.nn.quantization": ("QuantizeReport", "QuantPolicy", "SkipReason", "UnmarkedRule", "quantize",
                                  "quantized_layers", "set_timesteps"),
    "tawq_core.nn.roles": ("LayerRole", "mark", "role_of"),
    "tawq_core.nn.time_layout": ("stepwise",),
    "tawq_core.plugin_api.backend": ("Availability", "Backend", "MeterReading", "Timer"),
    "tawq_core.plugin_api.data": ("DatasetFactory", "DatasetSplits", "Encoding", "encode_batch"),
    "tawq_core.plugin_api.errors": ("BackendUnavailable", "CheckpointError", "ConfigError", "DatasetNotFound",
                                    "MissingDependency", "PluginError", "PluginNotFound", "ShapeError",
                                    "TawqError", "TrainingDiverged"),
    "tawq_core.plugin_api.hookspecs": ("hookimpl",),
    "tawq_core.plugin_api.model": ("ModelFactory",),
    "tawq_core.plugin_api.neuron": ("Neuron",),
    "tawq_core.plugin_api.quantizer": ("PackedWeight", "Quantizer", "QuantMode"),
    "tawq_core.plugin_api.registry": ("create", "get_registry", "list_plugins"),
    "tawq_core.training.checkpoint": ("build_from_checkpoint", "load_checkpoint", "load_into", "save_checkpoint"),
    "tawq_core.training.loop": ("EpochRecord", "TrainConfig", "TrainResult", "evaluate", "seed_everything", "train"),
    "tawq_core.training.resources": ("MemoryEstimate", "check_training_memory", "estimate_training_memory"),
    "tawq_core.training.train_resume": ("ResumeFile",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what the names are, for type checkers and editors (tests check it matches _EXPORTS)
    from tawq_core.deploy import deploy
    from tawq_core.export import export, load_packed
    from tawq_core.measure.energy import EnergyModel, estimate_energy, measure_energy
    from tawq_core.measure.latency import LatencyStats, measure_latency
    from tawq_core.measure.measurement import Measurement
    from tawq_core.measure.sops import OpsCounter, OpsReport, count_ops
    from tawq_core.nn.calibration import calibrate
    from tawq_core.nn.layers import QuantConv1d, QuantConv2d, QuantLinear
    from tawq_core.nn.quantization import (
        QuantizeReport,
        QuantPolicy,
        SkipReason,
        UnmarkedRule,
        quantize,
        quantized_layers,
        set_timesteps,
    )
    from tawq_core.nn.roles import LayerRole, mark, role_of
    from tawq_core.nn.time_layout import stepwise
    from tawq_core.plugin_api.backend import Availability, Backend, MeterReading, Timer
    from tawq_core.plugin_api.data import DatasetFactory, DatasetSplits, Encoding, encode_batch
    from tawq_core.plugin_api.errors import (
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
    from tawq_core.plugin_api.hookspecs import hookimpl
    from tawq_core.plugin_api.model import ModelFactory
    from tawq_core.plugin_api.neuron import Neuron
    from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer, QuantMode
    from tawq_core.plugin_api.registry import create, get_registry, list_plugins
    from tawq_core.training.checkpoint import build_from_checkpoint, load_checkpoint, load_into, save_checkpoint
    from tawq_core.training.loop import EpochRecord, TrainConfig, TrainResult, evaluate, seed_everything, train
    from tawq_core.training.resources import MemoryEstimate, check_training_memory, estimate_training_memory
    from tawq_core.training.train_resume import ResumeFile

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
