"""NIR export: neurons as LIF/IF nodes, layers as Affine/Conv nodes, quantization facts in node metadata.

Conventions (docs/export.md explains them for toolchain authors):

* time: one NIR evaluation step is one model timestep; ``dt`` (graph metadata, default 1e-4 s, the
  value spikingjelly and snntorch use) only scales the continuous-time parameters: a neuron with time
  constant tau steps gets ``tau = tau_steps * dt``, ``r = 1`` (decay_input) or ``tau_steps``,
  ``v_leak = v_reset``; an IF neuron gets ``r = 1 / dt``. tawq neurons fire on ``v >= v_threshold``
  (NIR says ``>``), recorded as ``fire`` in each neuron's metadata; soft reset is recorded as
  ``reset = "subtract"``, the leak rule and its exact step constant (`NeuronDynamics` ``leak``, ``k``)
  as ``leak`` and ``k`` (``tau·dt`` is stored in float32).
* BatchNorm (eval) is folded into the conv/linear before it (scale and shift recorded in metadata).
* per-timestep weights: NIR's weight fields are static, so a temporal layer's node holds the mean over
  time of its effective weights (the best static stand-in) and its metadata carries everything else,
  losslessly: ``weights_per_timestep`` ``[T, *weight.shape]`` (exactly what step t uses, BN folded in),
  the packed codes and tables, the pattern index of every weight, bits per weight, quantizer config.
* readout: the model averages over time before its linear head; in the graph the head runs every
  step and the graph metadata says ``readout = "mean-over-time"`` (average the output node over T).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tawq_core.export.errors import ExportError
from tawq_core.export.inference import FrozenQuantizer, inference_form, source_of
from tawq_core.export.neurons import InferenceNeuron
from tawq_core.export.nir_capture import Op, _merged_range, capture
from tawq_core.finite import max_abs_difference, nonfinite_outputs
from tawq_core.nn.layers import is_quantized
from tawq_core.nn.packing import unpack_digits
from tawq_core.plugin_api.neuron import NeuronDynamics
from tawq_core.training.checkpoint import atomic_path

DEFAULT_DT = 1e-4


@dataclass
class NirReport:
    path: Path
    bytes: int
    nodes: dict[str, str]  # node name -> NIR type
    max_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"format": "nir", "path": str(self.path), "bytes": self.bytes, "nodes": self.nodes,
                "max_abs_diff": self.max_abs_diff}


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _bn(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = x * scale + shift`` per channel."""
    var, mean = bn.running_var.float(), bn.running_mean.float()
    weight = bn.weight.float() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.float() if bn.bias is not None else torch.zeros_like(var)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def _channel(scale: Tensor, w: Tensor, lead: int = 0) -> Tensor:
    """`scale` per output channel, shaped to broadcast against `w` whose channel dim is `lead`."""
    return scale.reshape(*([1] * lead), -1, *([1] * (w.dim() - lead - 1)))


def _weights(module: nn.Module, scale: Tensor | None) -> tuple[Tensor, dict[str, Any]]:
    """(the node's weight field, its tawq metadata) for a conv/linear layer, BN scale folded in."""
    if not is_quantized(module):
        w = module.weight.detach().float()
        return (w if scale is None else w * _channel(scale, w)), {}
    frozen: FrozenQuantizer = module.quantizer
    packed = frozen.pack(module.weight, module.timesteps)
    source = source_of(frozen)
    meta: dict[str, Any] = {
        "quantizer": source.name, "config": json.dumps(source.config(), sort_keys=True, default=str),
        "timesteps": int(module.timesteps), "temporal": bool(source.temporal),
        "bits_per_weight": float(packed.bits_per_weight), "bits_per_weight_total": float(packed.bits_per_weight_total),
        "packed": {"payload": {k: _np(v) for k, v in packed.payload.items()},
                   "scales": {k: _np(v) for k, v in packed.scales.items()},
                   "meta": json.dumps(packed.meta, sort_keys=True, default=str)},
    }
    if "codebook" in packed.scales and len(packed.payload) == 1:
        codes = next(iter(packed.payload.values()))
        index = unpack_digits(codes, int(packed.scales["codebook"].shape[0]), packed.numel)
        meta["pattern_index"] = _np(index.reshape(packed.shape).to(torch.int16))
    effective = frozen.effective.float()
    if not source.temporal:
        meta["weight_field"] = "effective weights (static over time)"
        return (effective if scale is None else effective * _channel(scale, effective)), meta
    per_step = effective if scale is None else effective * _channel(scale, effective, lead=1)
    meta["weights_per_timestep"] = _np(per_step)
    meta["weight_field"] = "mean over time of weights_per_timestep"
    return per_step.mean(0), meta


def _layer_node(nir: Any, op: Op, bn: nn.Module | None, bn_name: str | None) -> Any:
    module = op.module
    scale, shift = _bn(bn) if bn is not None else (None, None)
    weight, meta = _weights(module, scale)
    bias = module.bias.detach().float() if module.bias is not None else torch.zeros(weight.shape[0])
    if scale is not None:
        bias = bias * scale + shift
        meta.update(folded_batchnorm=bn_name, bn_scale=_np(scale), bn_shift=_np(shift))
    metadata = {"tawq": meta} if meta else {}
    if isinstance(module, nn.Linear):
        return nir.Affine(weight=_np(weight), bias=_np(bias), metadata=metadata)
    if module.groups != 1 or module.padding_mode != "zeros":
        raise ExportError(f"layer {op.name!r}: NIR export supports ungrouped, zero-padded convolutions only")
    if isinstance(module, nn.Conv2d):
        return nir.Conv2d(input_shape=tuple(op.in_shape[1:]), weight=_np(weight), stride=tuple(module.stride),
                          padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
                          dilation=tuple(module.dilation), groups=1, bias=_np(bias), metadata=metadata)
    padding = module.padding if isinstance(module.padding, str) else int(module.padding[0])
    return nir.Conv1d(input_shape=int(op.in_shape[1]), weight=_np(weight), stride=int(module.stride[0]),
                      padding=padding, dilation=int(module.dilation[0]), groups=1, bias=_np(bias), metadata=metadata)


def _neuron_node(nir: Any, spec: NeuronDynamics, shape: tuple[int, ...], dt: float) -> Any:
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    meta = {"tawq": {"source": spec.source, "leak": spec.leak, "decay_input": spec.decay_input,
                     "fire": "v >= v_threshold", "reset": "hard" if spec.v_reset is not None else "subtract",
                     "rest": spec.rest, "dt": dt}}
    v_reset = full(spec.rest)
    if spec.leak == "none":
        return nir.IF(r=full(1.0 / dt), v_threshold=full(spec.v_threshold), v_reset=v_reset, metadata=meta)
    tau = spec.tau
    meta["tawq"].update(tau_steps=tau, k=spec.k)  # k: the exact step constant (tau·dt is stored in float32)
    return nir.LIF(tau=full(tau * dt), r=full(1.0 if spec.decay_input else tau), v_leak=full(spec.rest),
                   v_threshold=full(spec.v_threshold), v_reset=v_reset, metadata=meta)


def _pool_nodes(nir: Any, op: Op) -> list[tuple[str, Any]]:
    """Nodes for a module pool or a global mean; returns [(suffix, node)...] chained in order."""
    module = op.module
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    if op.kind == "mean" and len(op.in_shape) == 3:  # global average pool over H, W
        h, w = op.in_shape[1:]
        return [(".pool", nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]),
                                        padding=np.array([0, 0]))),
                ("", nir.Flatten(input_type={"input": np.array([op.in_shape[0], 1, 1])}, start_dim=0, end_dim=2))]
    if op.kind == "mean":  # mean over L of [C, L]: flatten + an averaging matrix (NIR has no 1-D pooling)
        c, length = op.in_shape
        matrix = np.kron(np.eye(c, dtype=np.float32), np.full((1, length), 1.0 / length, dtype=np.float32))
        return [(".flatten", nir.Flatten(input_type={"input": np.array(op.in_shape)}, start_dim=0, end_dim=1)),
                ("", nir.Affine(weight=matrix, bias=np.zeros(c, dtype=np.float32)))]
    if isinstance(module, nn.AdaptiveAvgPool2d):
        out = pair(module.output_size)
        h, w = op.in_shape[1:]
        if None in out or h % out[0] or w % out[1]:
            raise ExportError(f"{op.name}: adaptive pooling {h}x{w} -> {out} is not a fixed-window pool")
        k = np.array([h // out[0], w // out[1]])
        return [("", nir.AvgPool2d(kernel_size=k, stride=k, padding=np.array([0, 0])))]
    if getattr(module, "ceil_mode", False) or pair(getattr(module, "dilation", 1)) != (1, 1):
        raise ExportError(f"{op.name}: NIR pooling has no ceil_mode or dilation")
    kernel = np.array(pair(module.kernel_size))
    stride = np.array(pair(module.stride if module.stride is not None else module.kernel_size))
    padding = np.array(pair(module.padding))
    if isinstance(module, nn.AvgPool2d):
        if padding.any() and not module.count_include_pad or module.divisor_override:
            raise ExportError(f"{op.name}: this AvgPool2d configuration has no NIR equivalent")
        return [("", nir.AvgPool2d(kernel_size=kernel, stride=stride, padding=padding))]
    # max pooling of binary spikes == (sum of the window > 0.5)
    return [(".sum", nir.SumPool2d(kernel_size=kernel, stride=stride, padding=padding)),
            ("", nir.Threshold(threshold=np.full(op.out_shape, 0.5, dtype=np.float32),
                               metadata={"tawq": {"replaces": "MaxPool2d of binary spikes"}}))]


def build_graph(model: nn.Module, example: Tensor, dt: float = DEFAULT_DT, meta: dict[str, Any] | None = None) -> Any:
    """The NIR graph of `model` (its inference form, run on `example` ``[T, B, ...]``)."""
    import nir

    from tawq_core import __version__

    ops, readout = capture(inference_form(model, need_dynamics=True).cpu(), example.cpu())
    consumers: dict[str, list[str]] = {name: [] for name in ops}
    for op in ops.values():
        for src in op.inputs:
            consumers[src].append(op.name)
    folded: dict[str, str] = {}  # BN op -> the layer op it is folded into
    for op in ops.values():
        if isinstance(op.module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            prev = ops[op.inputs[0]] if len(op.inputs) == 1 else None
            if prev is None or not isinstance(prev.module, (nn.Linear, nn.Conv1d, nn.Conv2d)) or \
                    consumers[prev.name] != [op.name]:
                raise ExportError(f"{op.name}: NIR export folds BatchNorm into the conv/linear right before it, "
                                  "and this one follows something else")
            folded[prev.name] = op.name
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    alias: dict[str, str] = {}  # op name -> the NIR node that carries its output
    for op in ops.values():
        if op.name in folded.values():
            alias[op.name] = alias[op.inputs[0]]
            continue
        sources = [alias[s] for s in op.inputs]
        if op.kind == "input":
            chain = [("", nir.Input(input_type={"input": np.array(op.out_shape)}))]
        elif op.kind == "output":
            chain = [("", nir.Output(output_type={"output": np.array(op.in_shape)}))]
        elif op.kind == "flatten":
            chain = [("", nir.Flatten(input_type={"input": np.array(op.in_shape)}, start_dim=op.extra["start_dim"],
                                      end_dim=op.extra["end_dim"]))]
        elif isinstance(op.module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            bn_name = folded.get(op.name)
            chain = [("", _layer_node(nir, op, ops[bn_name].module if bn_name else None, bn_name))]
        elif isinstance(op.module, InferenceNeuron):
            chain = [("", _neuron_node(nir, op.module.spec, op.out_shape, dt))]
        elif isinstance(op.module, nn.Flatten):
            start, end = _merged_range(op.in_shape, op.out_shape) or (0, 0)
            chain = [("", nir.Flatten(input_type={"input": np.array(op.in_shape)}, start_dim=start, end_dim=end))]
        else:
            if isinstance(op.module, nn.MaxPool2d) and not (
                    len(op.inputs) == 1 and isinstance(ops[op.inputs[0]].module, InferenceNeuron)):
                raise ExportError(f"{op.name}: NIR has no max pooling; tawq exports it only for the spikes of one "
                                  "neuron layer (as SumPool2d + Threshold)")
            chain = _pool_nodes(nir, op)
        for suffix, node in chain:
            name = op.name + suffix
            nodes[name] = node
            edges.extend((src, name) for src in sources)
            sources = [name]
        alias[op.name] = sources[0]
    graph_meta = {"tawq": {"version": __version__, "timesteps": int(example.shape[0]), "dt": dt,
                           "readout": "mean-over-time" if readout else "none",
                           "weights": "per-timestep weights in node metadata 'weights_per_timestep' (see "
                                      "docs/export.md); weight fields hold their mean over time",
                           **(meta or {})}}
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph_meta, type_check=True)
    except (ValueError, AssertionError, NotImplementedError) as exc:
        raise ExportError(f"NIR rejected the graph: {exc}") from None


def export_nir(model: nn.Module, path: str | Path, example: Tensor, *, dt: float = DEFAULT_DT,
               atol: float = 1e-4, verify: bool = True, meta: dict[str, Any] | None = None) -> NirReport:
    """Write `model` as a NIR (HDF5) file; with `verify`, re-read it, simulate it (`run_nir`) and compare
    its time-averaged output to the model's logits."""
    import nir

    from tawq_core.export.nir_run import run_nir

    example = example.detach().cpu().float()
    graph = build_graph(model, example, dt, meta)
    target = Path(path)
    diff = None
    with atomic_path(target) as tmp:  # a graph that fails verification never appears under `path`
        nir.write(str(tmp), graph)
        if verify:
            reread = nir.read(str(tmp))
            with torch.no_grad():
                expected = copy.deepcopy(model).cpu().eval()(example)
                got = run_nir(reread, example)
            got = got.mean(0) if reread.metadata.get("tawq", {}).get("readout") == "mean-over-time" else got
            if got.shape != expected.shape:
                raise ExportError(f"the NIR graph produces shape {tuple(got.shape)}, the model "
                                  f"{tuple(expected.shape)}")
            nonfinite = nonfinite_outputs(got, expected, "the NIR simulation")
            if nonfinite:
                raise ExportError(f"{nonfinite}; export a model with finite weights")
            diff = max_abs_difference(got, expected)
            if not diff <= atol:
                raise ExportError(f"the NIR graph, simulated with tawq's conventions, differs from the model by "
                                  f"{diff:.3g} (> {atol:g}); pass verify=False to keep the file anyway")
    return NirReport(target, target.stat().st_size, {k: type(v).__name__ for k, v in graph.nodes.items()}, diff)
