"""`check_neuron`: the multi-step neuron contract (shapes, fresh state, gradients, dynamics description)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tawq_core.plugin_api.neuron import Neuron, NeuronDynamics
from tawq_core.testing.subject import CheckReport, Subject, resolve

#: [T, B, ...] inputs: features, images, and T = 1.
SHAPES: tuple[tuple[int, ...], ...] = ((4, 2, 5), (1, 3, 2, 2, 2), (6, 2, 3))


def current(shape: tuple[int, ...], seed: int) -> Tensor:
    """Input current on a 1/8 grid around the usual threshold of 1: exact in float, so every
    implementation of the same equations fires the same spikes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-8, 24, shape, generator=g).float() / 8


def _forward(s: Subject, n: Neuron, x: Tensor, where: str) -> Tensor:
    y = s.call(f"forward {where}", n, x)
    if not isinstance(y, Tensor) or tuple(y.shape) != tuple(x.shape):
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        s.fail(f"forward {where} returned {got}; spikes must have the input's shape [T, B, ...]")
    if not y.is_floating_point() or not bool(torch.isfinite(y).all()):
        s.fail(f"forward {where} returned non-finite or non-float values ({y.dtype})")
    return y


def _state(s: Subject, n: Neuron, report: CheckReport) -> None:
    for i, shape in enumerate(SHAPES):
        where = f"on input {shape}"
        x = current(shape, seed=i)
        with torch.no_grad():
            first = _forward(s, n, x, where)
            _forward(s, n, current(shape, seed=100 + i) * 3, where)
            if not torch.equal(_forward(s, n, x, where), first):
                s.fail(f"forward {where} depends on the previous call: state must start fresh on every forward")
            if shape[1] > 1 and not torch.equal(_forward(s, n, x[:, :1], where), first[:, :1]):
                s.fail(f"forward {where}: one sample's spikes depend on the other samples of the batch")
            n.train(not n.training)
            if not torch.equal(_forward(s, n, x, where), first):
                s.fail(f"forward {where} differs between train() and eval() mode")
            n.train(not n.training)
    report.passed(f"output shape = input shape on {len(SHAPES)} layouts; fresh state per forward; "
                  "batch samples independent; same spikes in train and eval mode")


def _gradients(s: Subject, n: Neuron, report: CheckReport) -> None:
    x = current(SHAPES[0], seed=3).requires_grad_(True)
    n.train()
    y = s.call("forward with gradients", n, x)
    if not y.requires_grad:
        s.fail("its spikes carry no gradient (use a surrogate gradient, e.g. a straight-through spike); "
               "models using it cannot be trained")
    s.call("backward", (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward)
    if x.grad is None or not bool(torch.isfinite(x.grad).all()) or not bool(x.grad.abs().sum() > 0):
        s.fail("no finite, non-zero gradient reaches the input current")
    report.passed("surrogate gradients reach the input")


def _dynamics(s: Subject, n: Neuron, report: CheckReport) -> None:
    from tawq_core.export.neurons import InferenceNeuron

    n.eval()
    described = s.call("describe_dynamics()", n.describe_dynamics)
    if described is None:
        report.notes.append("describe_dynamics() returns None: NIR export will refuse models using it "
                            "(ONNX export traces its forward)")
        return
    if not isinstance(described, NeuronDynamics):
        s.fail(f"describe_dynamics() returned {type(described).__name__}, not a tawq_core.plugin.NeuronDynamics")
    for i, shape in enumerate(SHAPES):
        x = current(shape, seed=i)
        with torch.no_grad():
            if not torch.equal(InferenceNeuron(described)(x), _forward(s, n, x, f"on input {shape}")):
                s.fail(f"describe_dynamics() ({described.leak} leak, v_reset={described.v_reset}) does not "
                       f"reproduce its spikes on input {shape}; exports would compute something else")
    report.passed("describe_dynamics() reproduces the spikes (NIR/ONNX export form)")


def check_neuron(neuron: Any, **options: Any) -> CheckReport:
    """Check a neuron (registered name, factory, class or instance) against the neuron contract.

    Raises `ConformanceError` (an AssertionError) with one line naming what broke.
    """
    s = resolve("neuron", neuron, Neuron, options)
    report = CheckReport(s.label)
    n = s.make(Neuron)
    _state(s, n, report)
    _gradients(s, n, report)
    _dynamics(s, n, report)
    return report
