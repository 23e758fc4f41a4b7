"""Export a (quantized) tawq model to ONNX, NIR or the packed tawq format, and load packed files back.

`export(model, format, path, ...)` is the one entry point; `load_packed(path)` rebuilds a model from a
packed file. Formats and their conventions are documented in docs/export.md and in each module:
`onnx_export` (onnxruntime-verified ONNX), `nir_export` (NIR graph with quantization metadata),
`packed_format` / `packed_load` (safetensors container of packed weights).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.export.errors import ExportError
from tawq_core.export.inference import source_of
from tawq_core.export.nir_export import NirReport, export_nir
from tawq_core.export.nir_run import run_nir
from tawq_core.export.onnx_export import OnnxReport, export_onnx
from tawq_core.export.packed_deployed import deployed_layers
from tawq_core.export.packed_format import PackedReport, read_packed, write_packed
from tawq_core.export.packed_load import load_packed
from tawq_core.finite import nonfinite_outputs, require_finite
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.errors import ConfigError

FORMATS = ("onnx", "nir", "tawq")
DEFAULT_BATCH = 2

__all__ = ["FORMATS", "ExportError", "NirReport", "OnnxReport", "PackedReport", "export",
           "load_packed", "read_packed", "run_nir"]


def _timesteps(model: nn.Module, timesteps: int | None, example: Tensor | None) -> int:
    found = {layer.timesteps for _, layer in [*quantized_layers(model), *deployed_layers(model)]}
    if example is not None:
        found.add(int(example.shape[0]))
    if timesteps is not None:
        found.add(int(timesteps))
    if len(found) > 1:
        raise ConfigError(f"conflicting timesteps {sorted(found)} (quantized layers, example, timesteps=); "
                          "export at the T the model was quantized for")
    if not found:
        raise ConfigError("cannot tell the number of timesteps: pass timesteps=T (the model has no quantized layers)")
    return found.pop()


def _example(model: nn.Module, T: int, example: Tensor | None, sample_shape: Any, batch: int, seed: int,
             model_options: dict[str, Any] | None = None) -> Tensor:
    if example is not None:
        return example
    shape = sample_shape if sample_shape is not None else getattr(model, "sample_shape", None)
    if shape is None and model_options:
        shape = model_options.get("sample_shape")
    if shape is None:
        raise ConfigError("cannot tell the input shape: pass sample_shape=(C, H, W) (without T and B) or example=")
    return torch.randn(T, batch, *tuple(shape), generator=torch.Generator().manual_seed(seed))


def _reload_problem(model: nn.Module, loaded: nn.Module, x: Tensor, path: str | Path) -> str | None:
    """Why the model reloaded from `path` is not the model (None when its outputs are bit-identical)."""
    reference = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        expected, got = reference(x), loaded(x)
    nonfinite = nonfinite_outputs(got, expected, "the reloaded model")
    if nonfinite:  # torch.equal is False for NaN == NaN: say why rather than "does not reproduce"
        return f"{nonfinite}; export a model with finite weights and outputs"
    if not torch.equal(expected, got):
        return (f"the model reloaded from {path} does not reproduce the model's outputs; are "
                "model_name/model_options those the model was built with?")
    return None


def _check_round_trips(model: nn.Module) -> None:
    """Every quantized layer's packed form must unpack to exactly the weights it computes with.

    Comparing reloaded *outputs* is not enough: weights off by 0.1 % rarely flip a spike, so a quantizer
    whose `unpack` drifts would pass as "reloaded bit-exactly". The quantizer is named (a plugin's bug).
    """
    from tawq_core.plugin_api.plugin_boundary import label

    with torch.no_grad():
        for name, layer in quantized_layers(model):
            want = layer.effective_weight()
            got = layer.quantizer.unpack(layer.pack())
            if not (isinstance(got, Tensor) and got.shape == want.shape and torch.equal(got.to(want.dtype), want)):
                diff = (f"max abs difference {float((got.to(want.dtype) - want).abs().max()):.3g}"
                        if isinstance(got, Tensor) and got.shape == want.shape else f"shape {tuple(got.shape)}")
                raise ExportError(f"{label(source_of(layer.quantizer), 'quantizer')}: unpack(pack(w)) differs from "
                                  f"the weights layer {name!r} computes with ({diff}); the packed file would hold "
                                  "another model (`tawq plugins --check NAME` tests the quantizer)")


def export(model: nn.Module, format: str, path: str | Path, *, example: Tensor | None = None,
           sample_shape: tuple[int, ...] | None = None, timesteps: int | None = None, batch_size: int = DEFAULT_BATCH,
           model_name: str | None = None, model_options: dict[str, Any] | None = None,
           quantizer_options: dict[str, Any] | None = None, verify: bool = True, seed: int = 0,
           **options: Any) -> OnnxReport | NirReport | PackedReport:
    """Write `model` to `path` in `format` ("onnx", "nir" or "tawq") and return a report (``.to_dict()``).

    Inputs are ``[T, B, *sample_shape]``: `example` is used as given, otherwise a seeded random batch of
    `batch_size` is drawn with `sample_shape` (default: the model's ``sample_shape`` attribute) and T
    from the quantized layers (or `timesteps`). ONNX and NIR files are verified against the model on that
    input (`verify`). For "tawq", `model_name` and `model_options` (the `tawq_core.create` arguments)
    make the file self-contained (and `verify` then reloads it and checks the outputs are bit-identical);
    without them `load_packed` needs the fp32 model passed in.
    Extra `options` go to the format's writer (ONNX: ``opset``, ``atol``; NIR: ``dt``, ``atol``).
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    require_finite(model.state_dict(), "cannot export", "a model with NaN/inf weights computes nothing useful "
                   "(did training diverge, or was the checkpoint edited?); retrain it", ExportError)
    if format != "tawq" and deployed_layers(model):
        raise ConfigError(f"a deployed model (tawq kernels) exports to the tawq format only; for {format}, export "
                          "the fake-quant model (tawq_core.load_packed(path, deploy=False))")
    T = _timesteps(model, timesteps, example)
    if format == "tawq":
        if options:
            raise ConfigError(f"unknown options for the tawq format: {sorted(options)}")
        name = model_name if model_name is not None else (getattr(model, "model_name", None) if model_options
                                                          else None)
        if verify:
            _check_round_trips(model)
        report = write_packed(model, path, timesteps=T, model_name=name, model_options=model_options,
                              quantizer_options=quantizer_options)
        if verify and name is not None:
            x = _example(model, T, example, sample_shape, batch_size, seed, model_options)
            # a deployed model is compared with its deployed reload, a fake-quant one with its fake-quant reload
            reloaded = load_packed(path, deploy=bool(deployed_layers(model)))
            problem = _reload_problem(model, reloaded, x, path)
            report = replace(report, bit_exact=problem is None)
            if problem:
                Path(path).unlink()
                raise ExportError(problem)
        return report
    x = _example(model, T, example, sample_shape, batch_size, seed, model_options)
    if format == "onnx":
        return export_onnx(model, path, x, verify=verify, **options)
    return export_nir(model, path, x, verify=verify, **options)
