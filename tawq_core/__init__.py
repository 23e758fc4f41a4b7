"""tawq: ultra-low-bit weight quantization for spiking neural networks.

The public API is what this module exports; everything else is internal and may change.
"""

import os

# torch auto-loads an installed torch_npu at `import torch`; without Ascend CANN that import fails and
# takes torch down with it. tawq's npu backend imports torch_npu itself, so autoload is not needed.
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

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

try:
    __version__ = version("tawq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

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
