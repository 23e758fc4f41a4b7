"""The three benchmark networks, built identically in tawq, spikingjelly 2.0 and snntorch 1.0.

Every network maps a time-major input ``[T, B, ...]`` to output spikes ``[T, B, 10]``; the loss is the
cross-entropy of the time-averaged output. The LIF settings are the same everywhere: tau 2 (snntorch:
beta = 1 - 1/tau = 0.5), threshold 1, hard reset to 0, detached reset, sigmoid surrogate with alpha 4.
snntorch's Leaky has no ``decay_input`` (its charge is ``beta * v + x``, tawq's and spikingjelly's
``v + (x - v) / tau``); its layers get the same weights and biases times 1 / tau (exact for tau = 2), which
makes it the same network up to rounding and fires on ``mem > threshold`` rather than ``>=``.

Layers are plain torch layers in all three: what differs is the neuron and how time is handled.
tawq and spikingjelly run each stateless layer once on the folded ``[T*B, ...]`` batch (spikingjelly's
``layer.*`` modules with ``step_mode='m'`` do that themselves); snntorch, a single-step framework, calls
every layer once per timestep, as its tutorials do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

import tawq_core

TAU, V_TH, ALPHA = 2.0, 1.0, 4.0


@dataclass(frozen=True)
class NetSpec:
    """One benchmark network: its name, batch size, per-sample input shape, and the factor applied to
    PyTorch's default weight init so that every layer fires (10-30 % of neurons) on the benchmark input:
    at the default init the output layers stay silent, and equal outputs would prove nothing."""

    name: str
    batch: int
    sample: tuple[int, ...]
    gain: float


NETS = (
    NetSpec("mlp-784-800-10", 128, (784,), 8.0),
    NetSpec("mlp-64-256-256-10", 128, (64,), 6.0),
    NetSpec("conv-16-32", 64, (1, 28, 28), 5.0),
)


# -- tawq -------------------------------------------------------------------------------------------------
class Flat(nn.Sequential):
    """Stateless layers on the folded ``[T*B, ...]`` view (tawq's own models do the same)."""

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        y = x.flatten(0, 1)
        for layer in self:
            y = layer(y)
        return y.reshape(t, b, *y.shape[1:])


def _tawq_lif() -> nn.Module:
    return tawq_core.create("neuron", "lif", tau=TAU, v_threshold=V_TH, v_reset=0.0, decay_input=True,
                            detach_reset=True, surrogate="sigmoid", alpha=ALPHA)


def _tawq(spec: NetSpec) -> nn.Module:
    if spec.name.startswith("mlp"):
        sizes = _mlp_sizes(spec)
        layers: list[nn.Module] = []
        for a, b in pairwise(sizes):
            layers += [Flat(nn.Linear(a, b)), _tawq_lif()]
        return nn.Sequential(*layers)
    return nn.Sequential(
        Flat(nn.Conv2d(1, 16, 3, padding=1)), _tawq_lif(), Flat(nn.MaxPool2d(2)),
        Flat(nn.Conv2d(16, 32, 3, padding=1)), _tawq_lif(), Flat(nn.MaxPool2d(2), nn.Flatten(1), nn.Linear(1568, 10)),
        _tawq_lif(),
    )


# -- spikingjelly -----------------------------------------------------------------------------------------
def _sj(spec: NetSpec) -> nn.Module:
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=TAU, decay_input=True, v_threshold=V_TH, v_reset=0.0, detach_reset=True,
                              surrogate_function=surrogate.Sigmoid(alpha=ALPHA), step_mode="m")

    if spec.name.startswith("mlp"):
        sizes = _mlp_sizes(spec)
        layers: list[nn.Module] = []
        for a, b in pairwise(sizes):
            layers += [layer.Linear(a, b, step_mode="m"), lif()]
        return nn.Sequential(*layers)
    return nn.Sequential(
        layer.Conv2d(1, 16, 3, padding=1, step_mode="m"), lif(), layer.MaxPool2d(2, step_mode="m"),
        layer.Conv2d(16, 32, 3, padding=1, step_mode="m"), lif(), layer.MaxPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(1568, 10, step_mode="m"), lif(),
    )


# -- snntorch ---------------------------------------------------------------------------------------------
class _SnnTorchNet(nn.Module):
    """Stateless layers and ``snn.Leaky`` neurons stepped through time with explicit membranes."""

    def __init__(self, stages: list[tuple[nn.Module, nn.Module]]):
        super().__init__()
        self.layers = nn.ModuleList(s[0] for s in stages)
        self.neurons = nn.ModuleList(s[1] for s in stages)

    def forward(self, x: Tensor) -> Tensor:
        mems = [n.reset_mem() for n in self.neurons]
        out = []
        for t in range(x.shape[0]):
            y = x[t]
            for i, (lay, neu) in enumerate(zip(self.layers, self.neurons, strict=True)):
                y, mems[i] = neu(lay(y), mems[i])
            out.append(y)
        return torch.stack(out)


def _snntorch(spec: NetSpec) -> nn.Module:
    import snntorch as snn
    from snntorch import surrogate

    def leaky() -> nn.Module:
        return snn.Leaky(beta=1.0 - 1.0 / TAU, threshold=V_TH, reset_mechanism="zero",
                         spike_grad=surrogate.sigmoid(slope=ALPHA))

    if spec.name.startswith("mlp"):
        sizes = _mlp_sizes(spec)
        return _SnnTorchNet([(nn.Linear(a, b), leaky()) for a, b in pairwise(sizes)])
    return _SnnTorchNet([
        (nn.Conv2d(1, 16, 3, padding=1), leaky()),
        (nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1)), leaky()),
        (nn.Sequential(nn.MaxPool2d(2), nn.Flatten(1), nn.Linear(1568, 10)), leaky()),
    ])


def _mlp_sizes(spec: NetSpec) -> list[int]:
    return [int(s) for s in spec.name.split("-")[1:]]


BUILDERS: dict[str, Callable[[NetSpec], nn.Module]] = {"tawq": _tawq, "spikingjelly": _sj, "snntorch": _snntorch}


def build(framework: str, spec: NetSpec, seed: int = 0) -> nn.Module:
    """The network `spec` in `framework`, with weights drawn from `seed` (the same for every framework)."""
    net = BUILDERS[framework](spec)  # tawq's own net too: its fresh init is replaced by the scaled reference
    torch.manual_seed(seed)
    reference = _tawq(spec)  # every framework starts from the same numbers: tawq's initialization
    # snntorch charges h = beta v + x: with x scaled by 1 / tau (weights and biases halved, exactly) that is
    # decay_input's h = v + (x - v) / tau, so all three compute the same network (up to rounding)
    shrink = 1.0 / TAU if framework == "snntorch" else 1.0
    with torch.no_grad():
        for a, b in zip(reference.parameters(), net.parameters(), strict=True):
            b.copy_(a * (spec.gain if a.dim() > 1 else 1.0) * shrink)
    return net


def reset_hook(framework: str) -> Callable[[nn.Module], None]:
    """What a user calls between batches: spikingjelly's ``functional.reset_net``; nothing elsewhere."""
    if framework == "spikingjelly":
        from spikingjelly.activation_based import functional

        return functional.reset_net
    return lambda net: None
