"""`run_nir`: simulate a NIR graph the way tawq writes it, to prove an exported file reproduces the model.

A reference interpreter for the node types the NIR exporter emits (Input, Output, Affine, Linear,
Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, Threshold, LIF, IF) under the conventions in
`tawq_core.export.nir_export`: one evaluation step per timestep, forward-Euler neurons
``v += (dt / tau) * (v_leak - v + r * I)`` (LIF) or ``v += dt * r * I`` (IF), the node's ``tawq``
metadata for what NIR cannot say (``fire`` ``>=``, ``reset`` "subtract", ``weights_per_timestep``).
Nodes with several incoming edges sum their inputs. It is a checker, not a fast simulator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tawq_core.errors import TawqError


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


def _neuron(node: Any, x: Tensor, v: Tensor | None, dt: float) -> tuple[Tensor, Tensor]:
    meta = _tawq(node)
    rest = float(meta.get("rest", 0.0))
    v = torch.full_like(x, rest) if v is None else v
    if type(node).__name__ == "IF":
        h = v + (dt * _t(node.r)) * x
    else:
        h = v + (_t(node.v_leak) - v + _t(node.r) * x) * (dt / _t(node.tau))
    thr = _t(node.v_threshold)
    fired = h >= thr if meta.get("fire", "v > v_threshold").startswith("v >=") else h > thr
    spikes = fired.to(x.dtype)
    if meta.get("reset") == "subtract":
        v = h - spikes * thr
    else:
        v = torch.where(fired, _t(node.v_reset).expand_as(h), h)
    return spikes, v


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
    steps = []
    for t in range(x.shape[0]):
        values: dict[str, Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            inp = x[t] if name == inputs[0] else sum(values[p] for p in preds[name])
            if type(node).__name__ in ("LIF", "IF"):
                values[name], state[name] = _neuron(node, inp, state[name], dt)
            else:
                values[name] = _apply(node, inp, t)
        steps.append(values[outputs[0]])
    return torch.stack(steps)
