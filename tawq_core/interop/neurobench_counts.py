"""NeuroBench's four model metrics, computed by tawq's own counting code on the weights a model really uses.

NeuroBench 2.3.0 (``neurobench.metrics``) defines, and this module reproduces without importing it:

- Footprint: bytes of every parameter and buffer (integer buffers included), each at its element size.
  Bit-aware here: a tawq-quantized layer's latent fp32 weight is replaced by its packed bytes (payload +
  scales, the layer's `pack`), which is what an inference runtime stores; quantizer-state buffers count
  as buffers, as in the bench's weight bytes.
- ConnectionSparsity: zero weights / all weights over the leaf Linear and Conv layers. Here the zeros
  are those of the *effective* weights (ternary zeros count), per timestep for temporal quantizers and
  averaged over T. NeuroBench rounds the result to 4 decimals; `connection_sparsity` does not.
- ActivationSparsity: zero outputs / all outputs of the activation modules (NeuroBench's ReLU and
  Sigmoid, plus tawq neurons and spikingjelly nodes, which a NeuroBench model must register).
- SynapticOperations: per input sample, for every call of every Linear/Conv layer, the (non-zero input,
  non-zero weight) pairs, biases excluded. A call whose inputs are all in {-1, 0, 1} is "spiking" and
  its pairs are Effective_ACs, any other call's are Effective_MACs; Dense is the pairs of an all-ones
  input with all-ones weights (zero padding is not counted). Here the weights are the effective ones at
  each timestep, so ternary zeros are skipped and temporal quantizers are counted step by step.

The pair counting is `tawq_core.measure.sops`' (the indicator convolution of the exact counter). NeuroBench's
conventions differ from tawq's own op counter: no stem role (a binary-fed stem is charged as
accumulates), {-1, 0, 1} counts as spiking, and Dense excludes padding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.measure.sops import COUNTED, HookedCounter, eval_no_grad, pairs_per_step, weight_indicator
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.errors import ConfigError, ShapeError
from tawq_core.plugin_api.neuron import Neuron

#: neurobench.blocks.activation.SUPPORTED_ACTIVATIONS
NEUROBENCH_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.Sigmoid)
#: layers NeuroBench counts that tawq's pair counting does not handle: refused rather than skipped
_NOT_COUNTED = (nn.Conv3d, nn.RNNBase, nn.RNNCellBase)
#: the key names of NeuroBench's SynapticOperations result
SYNOPS_KEYS = ("Effective_MACs", "Effective_ACs", "Dense")


def activation_types() -> tuple[type[nn.Module], ...]:
    """NeuroBench's activations, tawq's `Neuron`, and spikingjelly's `BaseNode` when spikingjelly is loaded
    (a spikingjelly model has imported it already; nothing is imported here)."""
    types = [*NEUROBENCH_ACTIVATIONS, Neuron]
    sj_neuron = sys.modules.get("spikingjelly.activation_based.neuron")
    if sj_neuron is not None:
        types.append(sj_neuron.BaseNode)
    return tuple(types)


def find_modules(model: nn.Module, types: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    """NeuroBench's search: walk the children recursively; a match is taken whole and not entered."""
    found = []
    for child in model.children():
        if isinstance(child, types):
            found.append(child)
        else:
            found.extend(find_modules(child, types))
    return found


def uncountable(model: nn.Module) -> str | None:
    """Why tawq cannot count `model`'s connections as NeuroBench does (a layer NeuroBench counts and tawq's
    pair counting does not handle), or None."""
    for name, module in model.named_modules():
        if isinstance(module, _NOT_COUNTED):
            return (f"tawq's NeuroBench metrics count Linear/Conv1d/Conv2d layers; {name!r} is a "
                    f"{type(module).__name__}: use neurobench's own metric classes for this model")
    return None


def check_countable(model: nn.Module) -> None:
    """Refuse such models: a silent skip would under-count."""
    reason = uncountable(model)
    if reason:
        raise ConfigError(reason)


def _timesteps(layer: nn.Module) -> int:
    """One weight set per timestep for temporal quantizers; a static weight serves any input layout as one."""
    return int(layer.timesteps) if getattr(getattr(layer, "quantizer", None), "temporal", False) else 1


def _steps_view(layer: nn.Module, x: Tensor, batch: int, who: str) -> Tensor:
    """`x` as ``[S, N, *sample]``, S the weight sets it meets: 1 for a static weight (any layout), T for a
    temporal layer fed ``[T, B, ...]`` or ``[T·B, ...]`` (B: the model input's batch, so never guessed)."""
    sample_dims = 1 if isinstance(layer, nn.Linear) else layer.weight.dim() - 1
    lead, sample = tuple(x.shape[: x.dim() - sample_dims]), x.shape[x.dim() - sample_dims:]
    steps = _timesteps(layer)
    if steps == 1 or (len(lead) >= 2 and lead[0] == steps) or (len(lead) == 1 and lead[0] == steps * batch):
        return x.reshape(steps, -1, *sample)
    raise ShapeError(f"NeuroBench counting: {who} has one weight set per timestep (T={steps}) but got input "
                     f"{tuple(x.shape)}, neither [T, B, ...] nor [T*B, ...] with B={batch}; run the whole "
                     "sequence in one call")


def footprint_bytes(model: nn.Module) -> int:
    """NeuroBench's Footprint with each quantized layer's weight at its packed size (payload + scales)."""
    packed: dict[int, int] = {}
    for _, layer in quantized_layers(model):
        with torch.no_grad():
            packed[id(layer.weight)] = layer.pack().nbytes
    params = sum(packed.get(id(p), p.numel() * p.element_size()) for p in model.parameters())
    return params + sum(b.numel() * b.element_size() for b in model.buffers())


def connection_sparsity(model: nn.Module) -> float:
    """Zero effective weights / weights over leaf Linear/Conv layers; temporal layers averaged over T."""
    check_countable(model)
    zeros = weights = 0.0
    for name, module in model.named_modules():
        if not isinstance(module, COUNTED) or next(module.children(), None) is not None:
            continue
        with torch.no_grad():
            nonzero = weight_indicator(module, _timesteps(module), name)  # [T, *w.shape]
        zeros += float(nonzero.numel() - nonzero.sum(dtype=torch.float64)) / nonzero.shape[0]
        weights += module.weight.numel()
    if not weights:
        raise ConfigError("ConnectionSparsity: the model has no Linear/Conv1d/Conv2d layer")
    return zeros / weights


@dataclass(frozen=True)
class CallOps:
    """One layer call: its (non-zero input, non-zero weight) pairs, dense pairs, and whether it was spiking."""

    effective: float
    dense: float
    spiking: bool


def call_ops(layer: nn.Module, x: Tensor, batch: int, who: str = "layer") -> CallOps:
    """NeuroBench's count for one call of `layer` on input `x` (from a model input of `batch` samples), on
    the effective weights of each timestep."""
    if not isinstance(layer, COUNTED):
        raise ConfigError(f"tawq's SynapticOperations counts Linear/Conv1d/Conv2d, got {type(layer).__name__}")
    with torch.no_grad():
        xt = _steps_view(layer, x.detach(), batch, who)
        ind_w = weight_indicator(layer, xt.shape[0], who)
        effective = float(pairs_per_step(layer, (xt != 0).float(), ind_w).sum())
        one_sample = torch.ones(1, 1, *xt.shape[2:], device=xt.device)  # xt: [S, N, *sample]
        per_sample = float(pairs_per_step(layer, one_sample, torch.ones_like(ind_w[:1])).sum())
        dense = xt.shape[0] * xt.shape[1] * per_sample
        spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
    return CallOps(effective, dense, spiking)


class SynopsTally:
    """Running NeuroBench SynapticOperations sums; `result` gives them per sample under NeuroBench's keys."""

    def __init__(self) -> None:
        self.macs = self.acs = self.dense = 0.0
        self.samples = 0

    def add(self, ops: CallOps) -> None:
        self.dense += ops.dense
        if ops.spiking:
            self.acs += ops.effective
        else:
            self.macs += ops.effective

    def result(self) -> dict[str, float]:
        n = self.samples
        values = (self.macs / n, self.acs / n, self.dense / n) if n else (0.0, 0.0, 0.0)
        return dict(zip(SYNOPS_KEYS, values, strict=True))


class NeuroBenchCounter(HookedCounter):
    """Hooks a model the way NeuroBench's harness does (connection layers, activation modules) while the
    ``with`` block runs; call the model on time-major ``[T, B, ...]`` batches inside it. ``synops=False``
    counts activations only."""

    def __init__(self, model: nn.Module, synops: bool = True):
        if synops:
            check_countable(model)
        super().__init__(model)
        self.count_synops = synops
        self.synops = SynopsTally()
        self.active = self.outputs = self.batch = 0
        self._names = {m: n for n, m in model.named_modules()}

    def _register(self) -> None:
        self._hook_before(self.model, self._on_model_input)
        for layer in find_modules(self.model, COUNTED) if self.count_synops else []:
            self._hook_before(layer, self._on_layer)
        for module in find_modules(self.model, activation_types()):
            self._hook_after(module, self._on_activation)

    def _on_model_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not args or not isinstance(args[0], Tensor) or args[0].dim() < 2:
            raise ShapeError("NeuroBench counting needs the model's first argument to be time-major [T, B, ...]")
        self.batch = int(args[0].shape[1])
        self.synops.samples += self.batch

    def _on_layer(self, layer: nn.Module, args: tuple[Any, ...]) -> None:
        self.synops.add(call_ops(layer, args[0], self.batch, self._names.get(layer, type(layer).__name__)))

    def _on_activation(self, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if isinstance(out, Tensor):
            self.active += int(torch.count_nonzero(out))
            self.outputs += out.numel()

    def workload(self) -> dict[str, Any]:
        """ActivationSparsity and SynapticOperations over everything run so far, NeuroBench's keys."""
        sparsity = (self.outputs - self.active) / self.outputs if self.outputs else 0.0
        return {"ActivationSparsity": sparsity, "SynapticOperations": self.synops.result()}


def neurobench_metrics(model: nn.Module, batches: Iterable[Tensor]) -> dict[str, Any]:
    """All four metrics, keyed as NeuroBench's `Benchmark.run` returns them, over time-major batches
    (eval mode, no autograd); bit-aware as the module docstring says. For a model tawq cannot count,
    ConnectionSparsity and SynapticOperations are None and ``unavailable`` says why."""
    reason = uncountable(model)
    with eval_no_grad(model), NeuroBenchCounter(model, synops=reason is None) as counter:
        for batch in batches:
            model(batch)
    metrics = {"Footprint": footprint_bytes(model),
               "ConnectionSparsity": None if reason else connection_sparsity(model), **counter.workload()}
    if reason:
        metrics.update(SynapticOperations=None, unavailable=reason)
    return metrics

