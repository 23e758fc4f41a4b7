"""Pipeline stage `measure`: one runnable form of a model timed on a backend, as users would run it.

Latency at batch 1 and at the measure batch (eval forward under ``inference_mode``, the backend's timer:
CUDA events on a GPU), peak memory over the batch-N runs, energy from the backend's meters when asked,
and the bytes the form keeps resident (`tawq_core.deploy.resident_bytes`) with the kernel each layer ran.
The bench records these per cell; `tawq eval` prints them for a packed file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tawq_core.measure.latency import LatencyStats, measure_latency
from tawq_core.measure.measurement import Measurement
from tawq_core.pipeline.deployed import Form, layer_kernels
from tawq_core.plugin_api.backend import Backend
from tawq_core.validators import check_int_at_least, check_positive_number


@dataclass(frozen=True)
class MeasureSpec:
    """How long to measure: untimed and timed forwards per latency, and the seconds of repeated forwards the
    energy meters read (None: no metered energy)."""

    warmup: int = 3
    repeats: int = 20
    energy_seconds: float | None = None

    def __post_init__(self) -> None:
        check_int_at_least("warmup", self.warmup, 0)
        check_int_at_least("repeats", self.repeats, 1)
        if self.energy_seconds is not None:
            check_positive_number("energy_seconds", self.energy_seconds)


@dataclass(frozen=True)
class FormMeasurement:
    """What `measure_form` found for one form on inputs of `batch` samples."""

    form: str
    batch: int
    latency: LatencyStats  # at `batch`
    latency_b1: LatencyStats  # at batch 1
    memory: Measurement  # peak over the batch-`batch` runs
    energy: Measurement | None  # per batch of `batch` samples; None when not asked for
    resident_bytes: int
    kernels: dict[str, str]
    note: str = ""


def _forward(net: nn.Module, x: Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            net(x)
    return run


def measure_form(form: Form, x: Tensor, spec: MeasureSpec, backend: Backend) -> FormMeasurement:
    """Time `form` on model-ready input ``x [T, B, ...]`` (and its first sample) on `backend`."""
    from tawq_core.deploy import resident_bytes
    from tawq_core.measure.energy import measure_energy

    net = form.net
    with backend.peak_memory() as memory:
        latency = measure_latency(backend, _forward(net, x), warmup=spec.warmup, repeats=spec.repeats)
    latency_b1 = measure_latency(backend, _forward(net, x[:, :1].contiguous()), warmup=spec.warmup,
                                 repeats=spec.repeats)
    energy = (None if spec.energy_seconds is None else
              measure_energy(backend, _forward(net, x), min_seconds=spec.energy_seconds))
    return FormMeasurement(form.name, int(x.shape[1]), latency, latency_b1, memory.result, energy,
                           resident_bytes(net), layer_kernels(net), form.note)
