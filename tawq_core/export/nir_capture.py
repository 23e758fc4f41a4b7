"""Record the dataflow of one forward pass at the granularity NIR needs: layers, neurons, adds, reshapes.

`torch.fx` cannot trace the models (their forwards validate shapes in Python), and the TorchScript
graph dissolves neurons into elementwise ops. So the model's inference form is *run* once on an
example ``[T, B, ...]`` while module hooks record every leaf layer call (conv, linear, BN, pooling,
flatten, neuron) and a torch-function mode records the tensor ops between them. Each tracked tensor
remembers which recorded ops sum to it (residual ADDs become fan-in, NIR's sum semantics), its
per-sample shape, and whether the time axis is still there. Ops that only fold or unfold the
``[T, B]`` leading dims are transparent; anything NIR cannot express raises with its name and place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from tawq_core.export.errors import ExportError
from tawq_core.export.neurons import InferenceNeuron

LEAVES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d,
          nn.AdaptiveAvgPool2d, nn.Flatten, InferenceNeuron)
# shape-only ops (and eval-mode dropout): transparent when they keep the per-sample shape, a Flatten otherwise
RESHAPES = {"flatten", "unflatten", "reshape", "view", "contiguous", "unsqueeze", "squeeze", "to", "float", "clone",
            "detach", "type_as", "dropout"}
ADDS = {"add", "__add__", "__radd__", "__iadd__", "add_"}


class CaptureError(ExportError):
    """The model uses an operation that a NIR graph cannot express."""


@dataclass
class Op:
    """One recorded computation: a leaf module call, a flatten, a global average pool, input or output."""

    name: str
    kind: str  # "input", "module", "flatten", "mean", "output"
    inputs: tuple[str, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    module: nn.Module | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Value:
    sources: tuple[str, ...]  # recorded ops whose outputs sum to this tensor
    lead: int  # leading dims before the per-sample shape
    shape: tuple[int, ...]  # per-sample shape
    timed: bool  # False once the time axis has been averaged away (readout)
    pending: tuple[Value, int, int] | None = None  # a flatten not yet emitted: (value before, start, end)


class Capture(TorchFunctionMode):
    """Runs the model once and collects `ops` (in execution order)."""

    def __init__(self, model: nn.Module, timesteps: int, batch: int):
        super().__init__()
        self.model, self.T, self.B = model, timesteps, batch
        self.ops: dict[str, Op] = {}
        self.values: dict[int, Value] = {}
        self.alive: list[Tensor] = []  # keep tracked tensors alive so their ids are not reused
        self.depth = 0
        self.where: list[str] = []
        self.readout = False
        self.emitted: dict[int, tuple[Value, Value]] = {}  # pending value -> (itself, kept alive; its Flatten)

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def _track(self, t: Tensor, value: Value) -> None:
        self.values[id(t)] = value
        self.alive.append(t)

    def _op(self, op: Op) -> str:
        base, n = op.name, 2
        while op.name in self.ops:  # a module called twice gets a numbered second node
            op.name, n = f"{base}#{n}", n + 1
        self.ops[op.name] = op
        return op.name

    def fail(self, what: str) -> CaptureError:
        place = self.where[-1] if self.where else "the model's forward"
        return CaptureError(f"NIR cannot express {what} (in {place or 'the root module'}); NIR export supports "
                            "feed-forward conv/linear/pool/neuron networks with residual adds (mlp, sew-resnet)")

    def _classify(self, t: Tensor, timed: bool) -> tuple[int, tuple[int, ...]]:
        shape = tuple(t.shape)
        if timed and shape[:2] == (self.T, self.B):
            return 2, shape[2:]
        if (timed and shape[:1] == (self.T * self.B,)) or (not timed and shape[:1] == (self.B,)):
            return 1, shape[1:]
        raise self.fail(f"a tensor of shape {shape} whose leading dims are not [T, B] or [T*B]")

    def materialize(self, value: Value) -> Value:
        """Emit a pending flatten (one that was not followed by a mean) as a real op."""
        if value.pending is None:
            return value
        if id(value) not in self.emitted:  # one Flatten node however many consumers the tensor has
            before, start, end = value.pending
            before = self.materialize(before)
            name = self._op(Op(f"flatten{len(self.ops)}", "flatten", before.sources, before.shape, value.shape,
                               extra={"start_dim": start, "end_dim": end}))
            self.emitted[id(value)] = (value, Value((name,), value.lead, value.shape, value.timed))
        return self.emitted[id(value)][1]

    # -- module calls ---------------------------------------------------------------------------------------
    def install(self) -> list[Any]:
        handles = []
        for name, module in self.model.named_modules():
            handles.append(module.register_forward_pre_hook(self._pre(name)))
            handles.append(module.register_forward_hook(self._post(name)))
        return handles

    def _pre(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if self.depth == 0:
                self.where.append(name)
            if isinstance(module, LEAVES) or self.depth:
                self.depth += 1
        return hook

    def _post(self, name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if isinstance(module, LEAVES) or self.depth > 1:
                self.depth -= 1
            if self.depth:
                return
            self.where.pop()
            if isinstance(module, LEAVES) and isinstance(out, Tensor) and args and id(args[0]) in self.values:
                self._leaf(name, module, args[0], out)
        return hook

    def _leaf(self, name: str, module: nn.Module, x: Tensor, out: Tensor) -> None:
        value = self.materialize(self.values[id(x)])
        if isinstance(module, InferenceNeuron) and not value.timed:
            raise self.fail("a neuron after the mean over time")
        if isinstance(module, InferenceNeuron) and value.lead != 2:
            raise self.fail("a neuron fed a time-folded tensor")
        out_shape = tuple(out.shape[value.lead:])
        op = self._op(Op(name or "model", "module", value.sources, value.shape, out_shape, module))
        self._track(out, Value((op,), value.lead, out_shape, value.timed))

    # -- tensor ops between modules -------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth or not isinstance(out, Tensor):
            return out
        tracked = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor) and id(a) in self.values]
        if not tracked or id(out) in self.values:
            return out
        name = getattr(func, "__name__", str(func))
        if name in ADDS:
            self._add(args, out)
        elif name in RESHAPES:
            self._reshape(self.values[id(tracked[0])], out)
        elif name == "mean":
            self._mean(self.values[id(args[0])], args, kwargs, out)
        else:
            raise self.fail(f"the tensor operation {name!r}")
        return out

    def _add(self, args: tuple[Any, ...], out: Tensor) -> None:
        operands = [a for a in args[:2] if isinstance(a, Tensor)]
        if len(operands) != 2 or not all(id(a) in self.values for a in operands):
            raise self.fail("adding a constant to activations")
        a, b = (self.materialize(self.values[id(t)]) for t in operands)
        if a.shape != b.shape or a.timed != b.timed or set(a.sources) & set(b.sources):
            raise self.fail("an add of tensors of different shapes, or of a tensor to itself")
        self._track(out, Value(a.sources + b.sources, a.lead, a.shape, a.timed))

    def _reshape(self, value: Value, out: Tensor) -> None:
        lead, shape = self._classify(out, value.timed)
        if shape == value.shape:
            self._track(out, Value(value.sources, lead, shape, value.timed, value.pending))
            return
        merged = _merged_range(value.shape, shape)
        if merged is None:
            raise self.fail(f"a reshape of per-sample shape {value.shape} to {shape}")
        self._track(out, Value(value.sources, lead, shape, value.timed, (value, *merged)))

    def _mean(self, value: Value, args: tuple[Any, ...], kwargs: dict[str, Any], out: Tensor) -> None:
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if kwargs.get("keepdim") or (len(args) > 2 and args[2]) or None in dims:
            raise self.fail("a mean with keepdim or over all dims")
        full = len(value.shape) + value.lead
        dims = tuple(sorted(d % full for d in dims))
        if dims == (0,) and value.timed and value.lead == 2:
            self.readout = True  # the mean over time: everything after it must be affine (the head)
            self._track(out, Value(value.sources, 1, value.shape, False, value.pending))
            return
        pooled, reduce = value, len(dims)
        if value.pending is not None and dims == (full - 1,):  # x.flatten(k).mean(-1): pool the merged dims
            before, first, last = value.pending
            if last == len(before.shape) - 1 and first == len(value.shape) - 1:
                pooled, reduce = before, last - first + 1
        if pooled is value and dims != tuple(range(full - reduce, full)):
            raise self.fail(f"a mean over dims {dims} that are not the trailing spatial dims")
        base = self.materialize(pooled)
        keep = base.shape[: len(base.shape) - reduce]
        if len(keep) != 1 or reduce not in (1, 2):
            raise self.fail(f"a mean of per-sample shape {base.shape} down to {keep}")
        name = self._op(Op(f"pool{len(self.ops)}", "mean", base.sources, base.shape, keep))
        self._track(out, Value((name,), value.lead, keep, value.timed))


def _merged_range(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, int] | None:
    """(start, end) if `after` is `before` with dims start..end merged into one (a flatten), else None."""
    if len(after) >= len(before):
        return None
    start = 0
    while start < len(after) and after[start] == before[start]:
        start += 1
    end = start + len(before) - len(after)
    if before[end + 1:] != after[start + 1:] or math.prod(before[start:end + 1]) != after[start]:
        return None
    return start, end


def capture(model: nn.Module, example: Tensor) -> tuple[dict[str, Op], bool]:
    """Run `model` (an inference form) on `example` ``[T, B, ...]``: (ops ending in "output", mean over time?)."""
    T, B = example.shape[:2]
    cap = Capture(model, int(T), int(B))
    x = example.clone()
    cap.ops["input"] = Op("input", "input", (), tuple(x.shape[2:]), tuple(x.shape[2:]))
    cap._track(x, Value(("input",), 2, tuple(x.shape[2:]), True))
    handles = cap.install()
    try:
        with torch.no_grad(), cap:
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, Tensor) or id(out) not in cap.values:
        raise CaptureError("the model's output does not depend on its input through operations NIR can express")
    value = cap.materialize(cap.values[id(out)])
    cap._op(Op("output", "output", value.sources, value.shape, value.shape))  # "output#2" if a module is "output"
    return cap.ops, cap.readout
