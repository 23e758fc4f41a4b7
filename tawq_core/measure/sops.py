"""Synaptic-operation counting with forward hooks, per layer and per timestep.

Every `nn.Conv1d`, `nn.Conv2d` and `nn.Linear` (quantized subclasses included) is hooked. The model
input must be ``[T, B, ...]``; each layer input is then ``[T, B, ...]``, the flattened ``[T·B, ...]``,
or ``[B, ...]``: a layer run once per sample per call (a head fed the mean over T runs 1 step; a layer
called once per timestep in a per-step loop runs T). For each layer call the counter records:

- dense MACs per step (the layer's multiply-accumulates for one sample at one step);
- the input firing rate (fraction of non-zero inputs);
- conventional operations, the syops convention of Spikingformer/QKFormer: a layer fed binary spikes
  does ``T · rate · MACs`` accumulates (SOPs, charged at E_AC); the stem (marked with
  `tawq_core.mark(..., "stem")`) and any layer fed non-binary values do ``T · MACs`` multiply-
  accumulates (charged at E_MAC);
- exact operations: the number of (non-zero input, non-zero effective weight) pairs per timestep,
  counted by running the layer's own convolution / matmul on the 0/1 indicators of the input and of
  the weight at that timestep (``|q_t| != 0`` for temporal quantizers, one indicator for static ones,
  every weight not exactly 0 for fp32). This is what a zero-skipping implementation executes, and what
  ternary zero weights save. Binary-input pairs are accumulates, other pairs multiply-accumulates.

All totals are per input sample, summed over the T timesteps. Biases, normalisation, pooling, and
products of two activation tensors (attention's Q·Kᵀ) are not counted. Firing rates of every
`tawq_core.Neuron`'s output are recorded too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from tawq_core.nn.roles import LayerRole, role_of
from tawq_core.plugin_api.errors import ShapeError
from tawq_core.plugin_api.neuron import Neuron

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def layer_macs_per_output(module: nn.Module) -> int:
    """Multiply-accumulates behind ONE output element: ``in/groups · prod(kernel)`` or ``in_features``."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return module.in_channels // module.groups * math.prod(module.kernel_size)
    raise TypeError(f"not a counted layer: {type(module).__name__}")


def layer_macs(module: nn.Module, output_shape: tuple[int, ...] | torch.Size) -> int:
    """Dense MACs producing an output of `output_shape` (no time dim): works on meta-device shapes."""
    return math.prod(output_shape) * layer_macs_per_output(module)


@dataclass
class LayerOps:
    """One counted layer; operation figures are per input sample, summed over T timesteps."""

    name: str
    kind: str
    charged_as: str  # "ac" (binary spike input), "mac" (stem role or non-binary input), "mixed"
    reason: str
    calls: int = 0
    steps: int = 0  # steps per sample: T, or 1 for a layer run once per sample (a head fed the mean over T)
    macs_per_step: float = 0.0  # dense MACs at one step
    input_rate: float = 0.0  # fraction of non-zero inputs
    weight_density: float = 0.0  # fraction of non-zero effective weights, averaged over timesteps
    conventional_ac: float = 0.0
    conventional_mac: float = 0.0
    exact_ac: float = 0.0
    exact_mac: float = 0.0
    exact_per_step: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class NeuronRate:
    name: str
    rate: float
    elements: int


@dataclass(frozen=True)
class OpsReport:
    """Per-layer rows and totals, per input sample over all timesteps."""

    timesteps: int
    samples: int
    layers: tuple[LayerOps, ...]
    neurons: tuple[NeuronRate, ...]
    firing_rate: float | None  # spikes / neuron outputs over all Neuron modules; None without neurons

    @property
    def conventional_ac(self) -> float:
        """SOPs, syops convention: Σ T · rate · MACs over spike-fed layers."""
        return sum(r.conventional_ac for r in self.layers)

    @property
    def conventional_mac(self) -> float:
        return sum(r.conventional_mac for r in self.layers)

    @property
    def exact_ac(self) -> float:
        return sum(r.exact_ac for r in self.layers)

    @property
    def exact_mac(self) -> float:
        return sum(r.exact_mac for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timesteps": self.timesteps, "samples": self.samples, "firing_rate": self.firing_rate,
            "totals": {"conventional_ac": self.conventional_ac, "conventional_mac": self.conventional_mac,
                       "exact_ac": self.exact_ac, "exact_mac": self.exact_mac},
            "layers": [asdict(r) for r in self.layers], "neurons": [asdict(n) for n in self.neurons],
        }


class _LayerTally:
    """Running sums for one layer over every call (whole batches, all timesteps)."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.calls = self.binary_calls = 0
        self.dense = 0.0  # dense MACs over every call (whole batches, all timesteps)
        self.nonzero = self.elements = 0
        self.weight_nonzero = self.weight_elements = 0
        self.conv_ac = self.conv_mac = self.exact_ac = self.exact_mac = 0.0
        self.per_step: list[float] = []  # exact pairs at each step the layer runs (T, or 1 for a head)

    def add_steps(self, first: int, pairs: list[float]) -> None:
        missing = first + len(pairs) - len(self.per_step)
        self.per_step.extend([0.0] * max(missing, 0))
        for i, p in enumerate(pairs):
            self.per_step[first + i] += p


def time_view(x: Tensor, timesteps: int, batch: int, sample_dims: int, who: str, linear: bool) -> tuple[Tensor, bool]:
    """``[S, N, *sample]`` view of a layer input, and whether it is one call per sample (S = 1).

    The one reading of layer inputs for every op counter (this module, the NeuroBench counts).

    Exact, from the model input's T and B (linear layers also take token dims after T and B):
    ``[T, B, ...]`` or ``[T·B, ...]`` give S = T; ``[B, ...]`` is a layer that runs once per sample and
    call (a head fed the mean over T, or one step of a per-step loop), S = 1.
    """
    lead = tuple(x.shape[: x.dim() - sample_dims])
    sample = x.shape[x.dim() - sample_dims:]
    if len(lead) >= 2 and lead[0] == timesteps and (linear or len(lead) == 2):
        return x.reshape(timesteps, -1, *sample), False
    if len(lead) >= 1 and (linear or len(lead) == 1):
        if lead[0] == timesteps * batch:
            return x.reshape(timesteps, -1, *sample), False
        if lead[0] == batch:
            return x.reshape(1, -1, *sample), True
    raise ShapeError(f"op counting: {who} got input {tuple(x.shape)}, which is neither [T, B, ...], [T*B, ...] nor "
                     f"[B, ...] with T={timesteps}, B={batch} (the model input's); run the model on time-major input")


def weight_indicator(module: nn.Module, timesteps: int, who: str) -> Tensor:
    """``[T, *w.shape]`` float 0/1 indicator of the effective weights at each timestep.

    Public because the NeuroBench counts read the same effective-weight zeros (one source for both)."""
    effective = module.effective_weight() if hasattr(module, "effective_weight") else module.weight
    w = effective.detach()
    if w.dim() == module.weight.dim():
        w = w.unsqueeze(0).expand(timesteps, *w.shape)
    elif w.shape[0] != timesteps:
        raise ShapeError(f"op counting: {who} has {w.shape[0]} per-timestep weight sets but T={timesteps}")
    return (w != 0).float()


def pairs_per_step(module: nn.Module, ind_x: Tensor, ind_w: Tensor) -> Tensor:
    """(non-zero input, non-zero weight) pairs at each timestep, summed over the batch: ``[T]``.

    Public because the NeuroBench counts use the same indicator convolution (one pair counter)."""
    if isinstance(module, nn.Linear):
        per_feature = ind_x.reshape(ind_x.shape[0], -1, ind_x.shape[-1]).sum(1, dtype=torch.float64)  # [T, in]
        return (per_feature * ind_w.sum(1, dtype=torch.float64)).sum(1)  # ind_w: [T, out, in]
    conv_forward = nn.Conv1d._conv_forward if isinstance(module, nn.Conv1d) else nn.Conv2d._conv_forward
    return torch.stack([conv_forward(module, ind_x[t], ind_w[t], None).sum(dtype=torch.float64)
                        for t in range(ind_x.shape[0])])


class HookedCounter:
    """Registers forward hooks (`_register`) on entering ``with`` and removes every one on leaving.

    The one hook set-up/teardown of tawq's op counters (`OpsCounter`, the NeuroBench counts).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._handles: list[RemovableHandle] = []

    def _register(self) -> None:
        """Each counter registers its own hooks here, through `_hook_before` / `_hook_after`."""
        raise NotImplementedError

    def _hook_before(self, module: nn.Module, hook: Any) -> None:
        self._handles.append(module.register_forward_pre_hook(hook))

    def _hook_after(self, module: nn.Module, hook: Any, always_call: bool = False) -> None:
        self._handles.append(module.register_forward_hook(hook, always_call=always_call))

    def __enter__(self) -> Self:
        self._register()
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class OpsCounter(HookedCounter):
    """Hooks a model while the ``with`` block runs; call the model on one or more batches inside it.

    ``timesteps`` defaults to the model input's leading dim. Each layer input is read exactly from the
    model input's T and B, never guessed from divisibility (see `time_view`).
    """

    def __init__(self, model: nn.Module, timesteps: int | None = None):
        super().__init__(model)
        self.timesteps = timesteps
        self.samples = 0
        self._layers: dict[nn.Module, _LayerTally] = {}
        self._neurons: dict[str, list[int]] = {}
        self._batch: int | None = None  # B of the model input in flight
        self._per_sample_calls: dict[nn.Module, int] = {}  # [B, ...] calls per layer in this forward

    def _register(self) -> None:
        self._hook_before(self.model, self._on_model_input)
        self._hook_after(self.model, self._on_model_output, always_call=True)
        for name, module in self.model.named_modules():
            if isinstance(module, COUNTED):
                self._layers[module] = _LayerTally(name or type(module).__name__, module)
                self._hook_after(module, self._on_layer)
            elif isinstance(module, Neuron):
                self._neurons[name] = [0, 0]
                self._hook_after(module, self._neuron_hook(name))

    def _on_model_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ShapeError("op counting needs the model's first argument to be a time-major tensor [T, B, ...]")
        if self.timesteps is None:
            self.timesteps = int(x.shape[0])
        elif x.shape[0] != self.timesteps:
            raise ShapeError(f"op counting: the model got T={x.shape[0]} after T={self.timesteps}; count batches "
                             "with the same number of timesteps together")
        self.samples += int(x.shape[1])
        self._batch = int(x.shape[1])
        self._per_sample_calls.clear()

    def _on_model_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._batch = None

    def _neuron_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if isinstance(out, Tensor):
                tally = self._neurons[name]
                tally[0] += int(torch.count_nonzero(out))
                tally[1] += out.numel()
        return hook

    def _on_layer(self, module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        tally = self._layers[module]
        if self.timesteps is None or self._batch is None:
            raise ShapeError(f"op counting: {tally.name} ran outside the model's forward on [T, B, ...] input; "
                             "call the model itself inside `with OpsCounter(model):`")
        T = self.timesteps
        linear = isinstance(module, nn.Linear)
        sample_dims = 1 if linear else module.weight.dim() - 1
        x, per_sample = time_view(args[0].detach(), T, self._batch, sample_dims, tally.name, linear)
        first = 0
        if per_sample:  # the k-th [B, ...] call of this layer in this forward is step k (one call: the head)
            first = self._per_sample_calls.get(module, 0)
            self._per_sample_calls[module] = first + 1
        with torch.no_grad():
            ind_x = (x != 0).float()
            ind_w = weight_indicator(module, T, tally.name)
            if per_sample:
                if first >= ind_w.shape[0]:
                    raise ShapeError(f"op counting: {tally.name} was called {first + 1} times on [B, ...] in one "
                                     f"forward, more than T={T}")
                ind_w = ind_w[first:first + 1]
            pairs = pairs_per_step(module, ind_x, ind_w)
        nonzero, elements = int(ind_x.sum()), x.numel()
        dense = float(out.numel() * layer_macs_per_output(module))
        binary = bool(((x == 0) | (x == 1)).all()) and role_of(module) != LayerRole.STEM
        tally.calls += 1
        tally.binary_calls += binary
        tally.dense += dense
        tally.nonzero += nonzero
        tally.elements += elements
        tally.weight_nonzero += int(ind_w.sum())
        tally.weight_elements += ind_w.numel()
        if binary:
            tally.conv_ac += dense * nonzero / max(elements, 1)
            tally.exact_ac += float(pairs.sum())
        else:
            tally.conv_mac += dense
            tally.exact_mac += float(pairs.sum())
        tally.add_steps(first, pairs.cpu().tolist())

    def report(self) -> OpsReport:
        """The counts so far, per input sample (divided by the samples the model has seen)."""
        if self.samples == 0 or self.timesteps is None:
            raise ShapeError("op counting saw no forward pass: call the model inside `with OpsCounter(model):`")
        n = self.samples
        rows = []
        for tally in self._layers.values():
            if tally.calls == 0:
                continue
            charged = "ac" if tally.binary_calls == tally.calls else "mac" if tally.binary_calls == 0 else "mixed"
            reason = ("stem role" if role_of(tally.module) == LayerRole.STEM
                      else "binary spike input" if charged == "ac" else "non-binary input")
            steps = len(tally.per_step)
            rows.append(LayerOps(
                name=tally.name, kind=type(tally.module).__name__, charged_as=charged, reason=reason,
                calls=tally.calls, steps=steps, macs_per_step=tally.dense / (steps * n),
                input_rate=tally.nonzero / max(tally.elements, 1),
                weight_density=tally.weight_nonzero / max(tally.weight_elements, 1),
                conventional_ac=tally.conv_ac / n, conventional_mac=tally.conv_mac / n,
                exact_ac=tally.exact_ac / n, exact_mac=tally.exact_mac / n,
                exact_per_step=[p / n for p in tally.per_step],
            ))
        neurons = tuple(NeuronRate(name, spikes / total, total)
                        for name, (spikes, total) in self._neurons.items() if total)
        total = sum(r.elements for r in neurons)
        rate = sum(r.rate * r.elements for r in neurons) / total if total else None
        return OpsReport(int(self.timesteps), n, tuple(rows), neurons, rate)


@contextmanager
def eval_no_grad(model: nn.Module) -> Iterator[None]:
    """Eval mode (no BatchNorm statistic updates, no dropout) and no autograd, then restore every flag.

    Public because every measuring pass (op counts, NeuroBench counts, calibration) runs the model so."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def count_ops(model: nn.Module, x: Tensor | list[Tensor], timesteps: int | None = None) -> OpsReport:
    """Run `model` (in eval mode, without autograd) on one T-major batch or a list of batches and count.

    Returns per-sample figures over all T timesteps; see the module docstring for both conventions.
    """
    batches = x if isinstance(x, (list, tuple)) else [x]
    with eval_no_grad(model), OpsCounter(model, timesteps) as counter:
        for batch in batches:
            model(batch)
    return counter.report()

