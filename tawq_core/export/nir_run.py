"""`run_nir`: simulate a NIR graph the way tawq writes it, to prove an exported file reproduces the model.

A reference interpreter for the node types the NIR exporter emits (Input, Output, Affine, Linear,
Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Threshold, LIF, IF) under the conventions in
`tawq_core.export.nir_export`: one evaluation step per timestep, the node's ``tawq`` metadata for what
NIR cannot say (``fire`` ``>=``, ``reset`` "subtract", ``weights_per_timestep``, the exact step constant
``k``). A LIF/IF node is read back into the `NeuronDynamics` it stands for (forward Euler
``v += (dt / tau) * (v_leak - v + r * I)`` with ``tau = k·dt`` and ``r = 1`` or ``k`` is that rule's
charge; IF ``r = 1 / dt``), its parameters checked against that reading, and run by the one update
rule (`NeuronDynamics.charge`/`fire`/`reset`), so the file reproduces the model's spikes exactly.
Nodes with several incoming edges sum their inputs. It is a checker, not a fast simulator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tawq_core.plugin_api.errors import TawqError
from tawq_core.plugin_api.neuron import NeuronDynamics


def _t(a: Any) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _tawq(node: Any) -> dict[str, Any]:
    return (getattr(node, "metadata", None) or {}).get("tawq", {})


def _weight(node: Any, t: int) -> Tensor:
    per_step = _tawq(node).get("weights_per_timestep")
    return _t(per_step[t]) if per_step is not None else _t(node.weight)


def _pair(v: Any) -> tuple[int, ...] | str:
    if isinstance(v, (str, bytes)):
        return v.decode() if isinstance(v, bytes) else v
    arr = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return tuple(arr)


def _scalar(name: str, node: Any, field: str) -> float:
    """The one value of `field` over the layer (tawq writes neuron parameters uniform)."""
    values = np.asarray(getattr(node, field), dtype=np.float64).ravel()
    if values.size == 0 or not np.all(values == values[0]):
        raise TawqError(f"run_nir simulates one {field} per neuron layer (as tawq writes them); node {name} varies")
    return float(values[0])


def _agrees(name: str, field: str, got: float, expected: float) -> None:
    if not np.isclose(got, expected, rtol=1e-5, atol=1e-7):  # float32 storage of a float64 value
        raise TawqError(f"run_nir: node {name} has {field} = {got:g}, but its tawq metadata implies {expected:g}")


def node_dynamics(name: str, node: Any, dt: float) -> NeuronDynamics:
    """The `NeuronDynamics` a LIF/IF node stands for under tawq's conventions, checked against its parameters."""
    meta = _tawq(node)
    if not str(meta.get("fire", "v > v_threshold")).startswith("v >="):
        raise TawqError(f"run_nir: node {name} fires on v > v_threshold (NIR's default); run_nir simulates "
                        "tawq's neurons, which fire on v >= v_threshold (metadata tawq.fire)")
    hard = meta.get("reset") != "subtract"
    v_threshold = _scalar(name, node, "v_threshold")
    v_reset = _scalar(name, node, "v_reset") if hard else None
    if type(node).__name__ == "IF":
        _agrees(name, "r", _scalar(name, node, "r"), 1.0 / dt)
        return NeuronDynamics("none", None, True, v_threshold, v_reset, source=str(meta.get("source", "")))
    leak = str(meta.get("leak", "div"))
    tau_steps = _scalar(name, node, "tau") / dt
    k = float(meta.get("k", tau_steps if leak == "div" else 1.0 / tau_steps))
    _agrees(name, "tau", tau_steps, k if leak == "div" else 1.0 / k)
    r = _scalar(name, node, "r")
    decay_input = bool(meta.get("decay_input", np.isclose(r, 1.0)))
    _agrees(name, "r", r, 1.0 if decay_input else tau_steps)
    spec = NeuronDynamics(leak, k, decay_input, v_threshold, v_reset, source=str(meta.get("source", "")))
    _agrees(name, "v_leak", _scalar(name, node, "v_leak"), spec.rest)
    return spec


def _neuron(spec: NeuronDynamics, x: Tensor, v: Tensor | None) -> tuple[Tensor, Tensor]:
    """One step of a neuron layer: (spikes, membrane after the reset)."""
    v = torch.full_like(x, spec.rest) if v is None else v
    h = spec.charge(x, v)
    fired = spec.fire(h)
    return fired.to(x.dtype), spec.reset(h, fired)


def _apply(node: Any, x: Tensor, t: int) -> Tensor:
    kind = type(node).__name__
    if kind in ("Input", "Output"):
        return x
    if kind == "Affine":
        return F.linear(x, _weight(node, t), _t(node.bias))
    if kind == "Linear":
        return F.linear(x, _weight(node, t))
    if kind in ("Conv1d", "Conv2d"):
        conv = F.conv1d if kind == "Conv1d" else F.conv2d
        padding = _pair(node.padding)
        return conv(x, _weight(node, t), _t(node.bias), _pair(node.stride), padding, _pair(node.dilation),
                     int(node.groups))
    if kind == "Flatten":
        end = int(node.end_dim)
        return x.flatten(int(node.start_dim) + 1, end + 1 if end >= 0 else end)
    if kind in ("AvgPool2d", "SumPool2d"):
        return F.avg_pool2d(x, _pair(node.kernel_size), _pair(node.stride), _pair(node.padding),
                            divisor_override=1 if kind == "SumPool2d" else None)
    if kind == "Threshold":
        return (x > _t(node.threshold)).to(x.dtype)
    raise TawqError(f"run_nir does not simulate NIR node type {kind}")


def run_nir(graph: Any, x: Tensor) -> Tensor:
    """Run `graph` on ``x`` ``[T, B, *input shape]``; returns the output node's ``[T, B, *output shape]``."""
    dt = float(_tawq(graph).get("dt", 1e-4))
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    order, done = [], set()
    while len(order) < len(graph.nodes):  # Kahn's order; the graphs tawq writes are acyclic
        ready = [n for n in graph.nodes if n not in done and all(p in done for p in preds[n])]
        if not ready:
            raise TawqError("run_nir supports acyclic graphs only")
        for n in sorted(ready):
            order.append(n)
            done.add(n)
    inputs = [n for n in order if type(graph.nodes[n]).__name__ == "Input"]
    outputs = [n for n in order if type(graph.nodes[n]).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise TawqError(f"run_nir needs one Input and one Output node, got {inputs} and {outputs}")
    state: dict[str, Tensor | None] = {n: None for n in order}
    neurons = {n: node_dynamics(n, graph.nodes[n], dt) for n in order
               if type(graph.nodes[n]).__name__ in ("LIF", "IF")}
    steps = []
    for t in range(x.shape[0]):
        values: dict[str, Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            inp = x[t] if name == inputs[0] else sum(values[p] for p in preds[name])
            if name in neurons:
                values[name], state[name] = _neuron(neurons[name], inp, state[name])
            else:
                values[name] = _apply(node, inp, t)
        steps.append(values[outputs[0]])
    return torch.stack(steps)
