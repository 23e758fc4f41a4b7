"""ONNX export: timesteps unrolled, effective weights as constants, dynamic batch, checked by onnxruntime.

The model's inference form (see `tawq_core.export.inference`) is traced with torch's TorchScript-based
exporter (``dynamo=False``): the dynamo exporter needs onnxscript, and the neurons' T-step loops
unroll naturally under tracing. The graph takes ``input`` ``[T, batch, *sample_shape]`` (batch is a
dynamic axis) and returns ``output`` (the model's logits). After writing, the file is checked with
``onnx.checker`` and run in onnxruntime on the example input (and on one with another batch size);
a difference to torch above `atol` raises instead of leaving a silently wrong file behind.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tawq_core.export.errors import ExportError
from tawq_core.export.inference import inference_form
from tawq_core.finite import max_abs_difference, nonfinite_outputs
from tawq_core.nn.layers import is_quantized
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.training.checkpoint import atomic_path

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-5


@dataclass
class OnnxReport:
    path: Path
    bytes: int
    opset: int
    max_abs_diff: float
    checked_batches: list[int] = field(default_factory=list)
    nodes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"format": "onnx", "path": str(self.path), "bytes": self.bytes, "opset": self.opset,
                "max_abs_diff": self.max_abs_diff, "checked_batches": self.checked_batches, "nodes": self.nodes}


class TimeFoldedConv(nn.Module):
    """ONNX form of a temporal quantized conv: the layer's own formulation (time folded into channels, one
    grouped conv with groups = T·g) with the T weight sets pre-stacked into one constant kernel, so the
    exporter sees a kernel of static shape (reshaping the effective weights inside the trace does not)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        w = layer.effective_weight().detach()
        self.T, self.cin, self.cout, self.groups = layer.timesteps, layer.in_channels, layer.out_channels, layer.groups
        self.sample_dims = w.dim() - 2  # C plus the spatial dims
        self.register_buffer("kernel", w.reshape(self.T * self.cout, *w.shape[2:]).clone())
        self.register_buffer("bias", layer.bias.detach().repeat(self.T) if layer.bias is not None else None)
        self.conv = F.conv1d if self.sample_dims == 2 else F.conv2d
        self.stride, self.dilation = layer.stride, layer.dilation
        self.padding = layer.padding if layer.padding_mode == "zeros" else 0
        self.pad = None if layer.padding_mode == "zeros" else \
            (layer._reversed_padding_repeated_twice, layer.padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        flattened = x.dim() == self.sample_dims + 1
        xt = x.reshape(self.T, -1, *x.shape[1:]) if flattened else x
        folded = xt.transpose(0, 1).reshape(-1, self.T * self.cin, *xt.shape[3:])
        if self.pad is not None:
            folded = F.pad(folded, self.pad[0], mode=self.pad[1])
        y = self.conv(folded, self.kernel, self.bias, self.stride, self.padding, self.dilation, self.T * self.groups)
        y = y.reshape(-1, self.T, self.cout, *y.shape[2:]).transpose(0, 1)
        return y.reshape(-1, *y.shape[2:]) if flattened else y


class FoldTime(nn.Module):
    """``[T, B, ...] -> [T*B, ...] -> layer -> [T, B, ...]`` with a symbolic batch.

    spikingjelly's multi-step layers (``step_mode="m"``, `SeqToANNContainer`) fold time with the batch
    size read as a Python int, which the tracer bakes into the graph; this does the same folding with
    ``-1`` for the batch, around the layer's plain torch class."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        y = self.layer(x.flatten(0, 1))
        return y.reshape(x.shape[0], -1, *y.shape[1:])


def _plain_torch(module: nn.Module) -> nn.Module | None:
    """A spikingjelly multi-step stateless layer as its torch base class (same attributes), else None."""
    if not type(module).__module__.startswith("spikingjelly.") or getattr(module, "step_mode", "m") != "m":
        return None
    base = next((c for c in type(module).__mro__ if c.__module__.startswith("torch.nn.modules")), None)
    if base is None or base is nn.Module:
        return None
    plain = copy.copy(module)
    plain.__class__ = base
    return plain


def _onnx_form(model: nn.Module) -> nn.Module:
    """The inference form with temporal quantized convs as `TimeFoldedConv` and spikingjelly layers folded."""
    form = inference_form(model)
    for parent in list(form.modules()):
        for name, child in list(parent.named_children()):
            if is_quantized(child) and child.quantizer.temporal and isinstance(child, (nn.Conv1d, nn.Conv2d)):
                setattr(parent, name, TimeFoldedConv(child))
            elif (plain := _plain_torch(child)) is not None:
                setattr(parent, name, FoldTime(plain))
    return form


def _outputs(model: nn.Module, x: Tensor) -> np.ndarray:
    with torch.no_grad():
        y = model(x)
    if not isinstance(y, Tensor):
        raise ExportError(f"ONNX export needs a model returning one tensor, got {type(y).__name__}")
    return y.detach().cpu().numpy()


def _verify(data: bytes, model: nn.Module, examples: list[Tensor], atol: float) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in examples:
        expected = _outputs(model, x)
        got = session.run(None, {"input": x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportError(f"onnxruntime returned shape {got.shape} for input {tuple(x.shape)}, torch "
                              f"{expected.shape}; the model's forward hard-codes a batch size")
        nonfinite = nonfinite_outputs(got, expected, "onnxruntime")
        if nonfinite:
            raise ExportError(f"{nonfinite} for input {tuple(x.shape)}; export a model with finite weights")
        worst = max(worst, max_abs_difference(got, expected))
    if not worst <= atol:
        raise ExportError(f"onnxruntime output differs from torch by {worst:.3g} (> {atol:g}); a module "
                          "probably does not trace (in-place writes or custom autograd Functions in a neuron "
                          "tawq does not recognise); see docs/export.md")
    return worst


def export_onnx(model: nn.Module, path: str | Path, example: Tensor, *, opset: int = DEFAULT_OPSET,
                atol: float = DEFAULT_ATOL, verify: bool = True) -> OnnxReport:
    """Write `model` (run on `example` ``[T, B, ...]``) as ONNX to `path` and verify it with onnxruntime."""
    import onnx

    if example.dim() < 2:
        raise ConfigError(f"ONNX export needs an example input [T, B, ...], got shape {tuple(example.shape)}")
    reference = copy.deepcopy(model).cpu().eval()  # the caller's model is left as it is (device, mode)
    example = example.detach().cpu().float()
    form = _onnx_form(reference)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python ints and the legacy exporter notice
        try:
            torch.onnx.export(form, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {1: "batch"}, "output": {0: "batch"}},
                              do_constant_folding=True)
        except Exception as exc:  # tracer/exporter failures come in many types; report one line
            raise ExportError(f"torch.onnx could not trace the model: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    data = buffer.getvalue()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    diff, batches = 0.0, []
    if verify:
        other = example.repeat(1, 2, *([1] * (example.dim() - 2)))[:, : example.shape[1] + 1]
        noise = torch.randn(other.shape, generator=torch.Generator().manual_seed(0))
        examples = [example, other + 0.1 * noise]  # a second batch size proves the batch axis is dynamic
        batches = [int(x.shape[1]) for x in examples]
        diff = _verify(data, reference, examples, atol)
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return OnnxReport(target, len(data), opset, diff, batches, len(proto.graph.node))


