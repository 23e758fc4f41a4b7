"""Run tawq models in NeuroBench's harness, with metrics that see the weights the model really uses.

NeuroBench (``pip install --no-deps neurobench==2.3.0``; its declared torchaudio would replace the pinned
torch) is the field's benchmark harness. Its Footprint, ConnectionSparsity and SynapticOperations read
a layer's ``.weight``: for a tawq-quantized layer that is the latent fp32 weight, so a ternary model
is reported at 32 bits per weight, without its zero weights, and (SynapticOperations runs a binarized
copy of the layer, whose quantizer then sees all-ones weights) with meaningless operation counts.
The classes here have the same names and result keys, so they drop into ``Benchmark`` in place of
NeuroBench's, and count on the effective weights (see `tawq_core.interop.neurobench_counts`)::

    from neurobench.benchmarks import Benchmark
    from tawq_core.interop.neurobench import (ActivationSparsity, ConnectionSparsity, Footprint,
                                              SynapticOperations, wrap)
    static, workload = [Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]
    results = Benchmark(wrap(model, timesteps=4), loader, [], [], [static, workload]).run()

`ActivationSparsity` is NeuroBench's own (activations do not depend on how weights are stored); `wrap`
registers tawq neurons and spikingjelly nodes as activation modules so it sees them.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.interop.neurobench_counts import (
    SynopsTally,
    activation_types,
    call_ops,
    connection_sparsity,
    footprint_bytes,
)
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.data import Encoding, encode_batch
from tawq_core.plugin_api.errors import ConfigError, MissingDependency, ShapeError
from tawq_core.plugin_api.quantizer import check_timesteps

INSTALL = "pip install --no-deps neurobench==2.3.0"

try:
    from neurobench.metrics.abstract import AccumulatedMetric, StaticMetric
    from neurobench.metrics.workload import ActivationSparsity
    from neurobench.models import NeuroBenchModel
except ImportError as exc:  # the bridge is optional: say how to get it, in one line
    raise MissingDependency(f"tawq_core.interop.neurobench needs neurobench ({exc}); install it with: {INSTALL}"
                            ) from None


class TawqNeuroBenchModel(NeuroBenchModel):
    """A tawq (or quantized spikingjelly) network behind NeuroBench's model interface.

    NeuroBench batches are batch-major ``[B, T, ...]``; tawq models take time-major ``[T, B, ...]``.
    A static batch ``[B, *sample_shape]`` (known from the model's ``sample_shape``) is direct-encoded
    over T, as tawq's own evaluation does. Neuron state is fresh for every batch: tawq neurons start
    from rest on every call, and spikingjelly nodes are reset before it. Returns the model's output
    (logits ``[B, classes]`` for tawq models; add ``lambda p: p.argmax(-1)`` as a postprocessor for
    NeuroBench's ClassificationAccuracy).
    """

    def __init__(self, net: nn.Module, timesteps: int, sample_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.net = net.eval()
        self.timesteps = check_timesteps(timesteps)
        self.batch: int | None = None  # B of the last batch run
        shape = sample_shape if sample_shape is not None else getattr(net, "sample_shape", None)
        self.sample_shape = tuple(shape) if shape is not None else None
        for name, layer in quantized_layers(net):
            if layer.quantizer.temporal and layer.timesteps != self.timesteps:
                raise ConfigError(f"wrap: layer {name!r} was quantized for T={layer.timesteps} (one weight set per "
                                  f"timestep) but timesteps={self.timesteps}; use the same T")
        for kind in activation_types():
            if kind not in self.activation_modules:
                self.add_activation_module(kind)

    def time_major(self, batch: Tensor) -> Tensor:
        """``[B, T, ...]`` or a static ``[B, *sample_shape]`` -> ``[T, B, ...]``."""
        shape = tuple(batch.shape)
        if self.sample_shape is not None and shape[1:] == self.sample_shape:
            return encode_batch(batch, Encoding.STATIC, self.timesteps)
        if len(shape) >= 3 and shape[1] == self.timesteps and (
                self.sample_shape is None or shape[2:] == self.sample_shape):
            return batch.transpose(0, 1).contiguous()
        expected = f"[B, {self.timesteps}, ...]" if self.sample_shape is None else (
            f"[B, {self.timesteps}, {', '.join(map(str, self.sample_shape))}] or static "
            f"[B, {', '.join(map(str, self.sample_shape))}]")
        raise ShapeError(f"wrap: NeuroBench batch of shape {shape} is not {expected} (T={self.timesteps})")

    def __call__(self, batch: Tensor) -> Any:
        x = self.time_major(batch)
        self.batch = int(x.shape[1])  # what SynapticOperations needs to read [T*B, ...] layer inputs exactly
        functional = sys.modules.get("spikingjelly.activation_based.functional")
        if functional is not None:
            functional.reset_net(self.net)
        with torch.no_grad():
            return self.net(x)

    def __net__(self) -> nn.Module:
        return self.net


def wrap(model: nn.Module, timesteps: int, sample_shape: tuple[int, ...] | None = None) -> TawqNeuroBenchModel:
    """`model` as a NeuroBench model (eval mode); `sample_shape` defaults to the model's own attribute."""
    return TawqNeuroBenchModel(model, timesteps, sample_shape)


class Footprint(StaticMetric):
    """NeuroBench's Footprint (bytes of parameters and buffers), quantized weights at their packed size."""

    def __call__(self, model: NeuroBenchModel) -> int:
        return footprint_bytes(model.__net__())


class ConnectionSparsity(StaticMetric):
    """NeuroBench's ConnectionSparsity on the effective weights (temporal ones averaged over T), rounded
    to 4 decimals as NeuroBench rounds it."""

    def __call__(self, model: NeuroBenchModel) -> float:
        return round(connection_sparsity(model.__net__()), 4)


class SynapticOperations(AccumulatedMetric):
    """NeuroBench's SynapticOperations (Effective_MACs, Effective_ACs, Dense per sample) counted on the
    effective weights of each timestep, from the inputs NeuroBench's connection hooks recorded."""

    def __init__(self) -> None:
        super().__init__(requires_hooks=True)
        self.tally = SynopsTally()

    def reset(self) -> None:
        self.tally = SynopsTally()

    def __call__(self, model: NeuroBenchModel, preds: Tensor, data: tuple[Tensor, Tensor]) -> dict[str, float]:
        batch = getattr(model, "batch", None) or data[0].size(0)  # NeuroBench's batches are batch-major
        for hook in model.connection_hooks:
            for args in hook.inputs:
                self.tally.add(call_ops(hook.layer, args[0], batch, type(hook.layer).__name__))
        self.tally.samples += data[0].size(0)
        return self.compute()

    def compute(self) -> dict[str, float]:
        return self.tally.result()


__all__ = ["ActivationSparsity", "ConnectionSparsity", "Footprint", "SynapticOperations", "TawqNeuroBenchModel",
           "wrap"]
