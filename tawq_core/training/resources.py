"""Will a training run fit in memory? A cheap estimate before the first step.

A paper preset sized for a GPU node (ImageNet, batch 512, T = 4) started on a laptop does not fail: it
swaps for an hour, or the kernel kills it without a word. This module estimates what one training step
needs and compares it with the memory free on the training device, so such a run refuses in one line
(`ConfigError`, suggesting a smaller ``--batch-size`` or model) and a run that is merely close gets a
warning.

The estimate, in bytes:

* parameters, their gradients and AdamW's two moment buffers: 4 x the parameter bytes, plus buffers;
* activations: a forward pass on the ``meta`` device (shapes only, nothing allocated, no arithmetic) with
  a forward hook on every leaf module summing the bytes of its outputs, for one batch
  ``[T, B, *sample_shape]``; quantized layers add their effective weights (``[T, *weight]`` for temporal
  quantizers), which autograd keeps for the backward pass, times `ACTIVATION_FACTOR`. Autograd keeps more
  than the hooks see (inputs of some operations, the quantizers' own intermediates): the measured peak
  of a real CPU training step (forward + backward + AdamW step, second step) was 1.25-1.9x the hook sum
  for the built-in SEW-ResNet (1-D, 2-D), Spikingformer and QKFormer, fp32, ptq8 and tawq, and 1.7x /
  3.1x for a 512-wide MLP in fp32 / tawq. The factor is therefore 1.0: the estimate is a lower bound, so
  a run refused on it could not have fitted, and a run above `WARN_FRACTION` of the free memory is
  warned about because its real need may be two or three times the estimate;
* one input batch.

The meta forward is run at T = 1, 2 and 3 and extrapolated to the run's T (`activation_bytes_at`), so the
estimate takes the same time at T = 4 and at T = 10^6, and an absurd T is refused at once.

The dataset's in-RAM size (tensors and arrays the dataset objects hold; memory-mapped and lazily decoded
files count as 0) is reported beside it. Once loaded it is already resident, so it is part of what
``MemAvailable`` no longer offers rather than something added to the need.

Available memory: ``MemAvailable`` of /proc/meminfo for cpu, `torch.cuda.mem_get_info` for cuda;
elsewhere it is unknown, and only a need above `DEVICE_LIMIT` (1 TiB, more than any single device) is refused.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tawq_core.plugin_api.errors import ConfigError

#: Multiplier from the summed leaf-module outputs to the activation memory of a training step.
ACTIVATION_FACTOR = 1.0
#: Above this share of the available memory the run is allowed but warned about.
WARN_FRACTION = 0.5
#: AdamW keeps exp_avg and exp_avg_sq, each the size of the parameters.
OPTIMIZER_STATES = 2
#: Where the free memory cannot be read, a run needing more than this (no single device has it) is refused.
DEVICE_LIMIT = 2**40
MEMINFO = Path("/proc/meminfo")
GIB = 2**30


def _gib(n: float) -> str:
    if n >= GIB / 10:
        return f"{n / GIB:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 / 10 else f"{n / 1024:.0f} KiB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training step needs on the training device, by part."""

    parameters: int
    gradients: int
    optimizer: int
    buffers: int
    activations: int
    inputs: int
    batch_size: int
    timesteps: int
    dataset: int | None = None  # in-RAM bytes of the loaded dataset, where known (already resident)

    @property
    def training(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.buffers + self.activations + self.inputs

    def describe(self) -> str:
        text = (f"~{_gib(self.training)} (activations {_gib(self.activations)} at batch {self.batch_size}, "
                f"T={self.timesteps}; weights + gradients + AdamW state "
                f"{_gib(self.parameters + self.gradients + self.optimizer)})")
        if self.dataset:
            text += f"; dataset in RAM {_gib(self.dataset)}"
        return text


def meminfo_available(path: Path = MEMINFO) -> int | None:
    """``MemAvailable`` in bytes (what can be allocated without swapping), or None where unreadable."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory(device: torch.device | str) -> tuple[int | None, str]:
    """Free bytes on `device` and where the figure comes from; None when it cannot be known."""
    device = torch.device(device)
    if device.type == "cpu":
        return meminfo_available(), "MemAvailable in /proc/meminfo"
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory on {device}"
    return None, f"free memory on {device.type} is not known"


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray) and not isinstance(value, np.memmap) and value.base is None:
        return int(value.nbytes)
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def dataset_bytes(*datasets: Any) -> int | None:
    """Bytes of tensors and arrays held by the dataset objects (following ``Subset.dataset``); None if
    none are found (lazily decoded or memory-mapped data, whose size in RAM is not known)."""
    seen: set[int] = set()
    total = 0
    for dataset in datasets:
        while dataset is not None and id(dataset) not in seen:
            seen.add(id(dataset))
            attributes = vars(dataset) if hasattr(dataset, "__dict__") else {}
            total += sum(_tensor_bytes(v) for v in attributes.values())
            dataset = attributes.get("dataset")  # torch Subset / wrappers
    return total or None


@contextlib.contextmanager
def _meta_effective_weights(model: nn.Module, timesteps: int) -> Iterator[list[int]]:
    """Quantized layers hand out empty meta weights of the right shape instead of running their quantizer
    (whose maths may not run on the meta device); yields a one-item list with their total bytes."""
    from tawq_core.nn.quantization import quantized_layers

    layers = [layer for _, layer in quantized_layers(model)]
    total = [0]
    for layer in layers:
        w = layer.weight
        shape = (timesteps, *w.shape) if getattr(layer.quantizer, "temporal", False) else tuple(w.shape)
        total[0] += math.prod(shape) * w.element_size()
        layer.effective_weight = lambda shape=shape, dtype=w.dtype: torch.empty(shape, dtype=dtype, device="meta")
    try:
        yield total
    finally:
        for layer in layers:
            del layer.effective_weight


def activation_bytes(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
    """Summed output bytes of every leaf module (plus quantized layers' effective weights) for one forward
    pass of an input of `input_shape` ``[T, B, ...]``, run on the meta device: no memory, no arithmetic.

    The model itself is not changed: its parameters and buffers are swapped for meta tensors only for the
    duration of the call (`torch.func.functional_call`), in training mode as the step would run.
    """
    from torch.func import functional_call

    total = [0]

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total[0] += sum(o.numel() * o.element_size() for o in outputs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if next(iter(m.children()), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    state = {name: torch.empty_like(t, device="meta") for name, t in
             [*model.named_parameters(), *model.named_buffers()]}
    was_training = model.training
    model.train()
    try:
        with _meta_effective_weights(model, int(input_shape[0])) as weights, torch.no_grad():
            functional_call(model, state, (torch.empty(tuple(input_shape), dtype=dtype, device="meta"),))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total[0] + weights[0]


#: Above this many timesteps, activations are measured at T = 1, 2, 3 and extrapolated (see below).
MEASURED_TIMESTEPS = 3


def activation_bytes_at(model: nn.Module, timesteps: int, batch_shape: Sequence[int]) -> int:
    """`activation_bytes` for ``[timesteps, *batch_shape]`` in a time that does not grow with T.

    The meta forward still loops over T in every neuron, so at T = 10^4 it took seconds and at 10^6 it
    hung before the run could be refused. A spiking network's activations are a polynomial in T of
    degree <= 1 (per-step states and spikes, ``[T, *w]`` effective weights, plus T-independent parts);
    they are measured at T = 1, 2, 3 and extrapolated with the quadratic through those points, which is
    exact for any activation count of degree <= 2 in T (time-mixing attention included). The quantized
    layers are switched to each T for the measurement and back afterwards.
    """
    from tawq_core.nn.quantization import quantized_layers, set_timesteps

    original = {layer.timesteps for _, layer in quantized_layers(model)}
    if timesteps <= MEASURED_TIMESTEPS or len(original) > 1:  # (mixed T cannot be restored: measure as is)
        return activation_bytes(model, (timesteps, *batch_shape))
    measured = []
    try:
        for t in (1, 2, 3):
            if original:
                set_timesteps(model, t)
            measured.append(activation_bytes(model, (t, *batch_shape)))
    finally:
        if original:
            set_timesteps(model, original.pop())
    a1, a2, a3 = measured
    n = timesteps - 1
    return a1 + n * (a2 - a1) + n * (n - 1) // 2 * (a3 - 2 * a2 + a1)


def estimate_training_memory(model: nn.Module, sample_shape: Sequence[int], timesteps: int, batch_size: int,
                             datasets: Sequence[Any] = (), amp: bool = False) -> MemoryEstimate:
    """What one AdamW training step of `model` on batches ``[T, B, *sample_shape]`` needs (see module doc).

    `model` may live on any device, including ``meta`` (build it under ``with torch.device("meta"):`` to
    size a model too large to create). ``amp=True`` (float16 autocast) counts activations at half their
    float32 size, keeping the estimate a lower bound.
    """
    params = [p for p in model.parameters()]
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    parameters = sum(p.numel() * p.element_size() for p in params)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    input_shape = (timesteps, batch_size, *sample_shape)
    activations = activation_bytes_at(model, timesteps, (batch_size, *sample_shape)) // (2 if amp else 1)
    return MemoryEstimate(
        parameters=parameters, gradients=trainable, optimizer=OPTIMIZER_STATES * trainable, buffers=buffers,
        activations=int(ACTIVATION_FACTOR * activations), inputs=math.prod(input_shape) * 4,
        batch_size=batch_size, timesteps=timesteps, dataset=dataset_bytes(*datasets) if datasets else None,
    )


def check_training_memory(model: nn.Module, sample_shape: Sequence[int], timesteps: int, batch_size: int,
                          device: torch.device | str, datasets: Sequence[Any] = (),
                          log: Callable[[str], None] | None = None, available: int | None = None,
                          amp: bool = False) -> MemoryEstimate | None:
    """Refuse (`ConfigError`) a run whose estimate exceeds the free memory of `device`; warn through `log`
    when it uses more than `WARN_FRACTION` of it. Returns the estimate, or None when it could not be made
    (a model whose forward does not run on the meta device is trained unchecked, with a log line)."""
    say = log or (lambda _line: None)
    try:
        estimate = estimate_training_memory(model, sample_shape, timesteps, batch_size, datasets, amp)
    except Exception as exc:  # a third-party model may not run on meta; the check is advisory then
        say(f"memory check skipped: the model's forward does not run on the meta device "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return None
    where = ""
    if available is None:
        available, where = available_memory(device)
        where = f" ({where})"
    if available is None:
        if estimate.training > DEVICE_LIMIT:  # free memory unknown (npu...): still refuse the absurd at once
            raise ConfigError(f"training needs {estimate.describe()}, more than any single device holds "
                              f"({_gib(DEVICE_LIMIT)}); use a smaller --batch-size (now {batch_size}), fewer "
                              f"timesteps (now {timesteps}) or a smaller model")
        return estimate
    if estimate.training > available:
        raise ConfigError(
            f"training needs {estimate.describe()}, more than the {_gib(available)} free{where}; "
            f"use a smaller --batch-size (now {batch_size}) or a smaller model, fewer timesteps (now {timesteps}), "
            "or a machine with more memory"
        )
    if estimate.training > WARN_FRACTION * available:
        say(f"warning: training needs {estimate.describe()}, {100 * estimate.training / available:.0f}% of the "
            f"{_gib(available)} free{where}; a smaller --batch-size would leave headroom")
    return estimate


@contextlib.contextmanager
def out_of_memory_as_config_error(batch_size: int) -> Iterator[None]:
    """An allocation failure during training becomes one line suggesting a smaller batch, not a traceback."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise ConfigError(f"out of device memory while training at batch {batch_size}; use a smaller "
                          "--batch-size or a smaller model") from None
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc) and "not enough memory" not in str(exc):
            raise
        raise ConfigError(f"out of memory while training at batch {batch_size}; use a smaller --batch-size "
                          "or a smaller model") from None
