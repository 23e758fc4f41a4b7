"""The deployed form: inference modules whose quantized layers keep only packed weights resident.

Training uses fake-quant layers (latent fp32 weights, effective weights computed on the fly). `deploy`
turns a quantized model into its inference form: every `QuantLinear`/`QuantConv1d`/`QuantConv2d` becomes a
`DeployedLayer` holding bit planes (tawq, mtawq, ternary, binary), int8 columns (ptq8) or, for a
quantizer tawq has no kernel for, the `PackedWeight` itself unpacked per forward (the documented
fallback, reported as such by `kernels_used`). No float copy of a quantized weight stays anywhere.
Everything else (stem, head, BatchNorm, neurons) is kept as it is, in full precision.
"""

from __future__ import annotations

import copy
from enum import Enum

import torch
from torch import nn

from tawq_core.deploy.codes import integer_weights, is_builtin
from tawq_core.deploy.forms import BitPlanes, Columns, UnpackFallback, WeightForm
from tawq_core.deploy.geometry import Geometry
from tawq_core.deploy.layer import DeployedLayer
from tawq_core.deploy.memory import resident_bytes
from tawq_core.errors import ConfigError
from tawq_core.quantizer import PackedWeight, Quantizer

MAX_PLANE_LEVELS = 7  # up to 3 magnitude bit planes; wider codes (ptq8) run as int8 columns


class DeployBackend(str, Enum):
    """Where deployed layers run: ``cpu`` uses the compiled kernels; the others run each layer's exact
    dense torch path on their device (no deployed kernels for them yet); ``torch`` forces that path on CPU."""

    CPU = "cpu"
    CUDA = "cuda"
    NPU = "npu"
    TORCH = "torch"


class TemporalLayout(str, Enum):
    """Resident layout of temporal (TaWQ) weights: bit planes (T + 1 bits per weight, the default) or
    int8 columns per timestep (8·T bits per weight) for the spike-accumulate kernel."""

    BITPLANES = "bitplanes"
    COLUMNS = "columns"


def _backend(backend: DeployBackend | str) -> DeployBackend:
    try:
        return DeployBackend(backend)
    except ValueError:
        raise ConfigError(f"unknown deploy backend {backend!r}; choose one of "
                          f"{[b.value for b in DeployBackend]}") from None


def _form(packed: PackedWeight, quantizer: Quantizer, geometry: Geometry, layout: TemporalLayout) -> WeightForm:
    weights = integer_weights(packed, is_builtin(quantizer))
    if weights is None:
        return UnpackFallback(packed, quantizer)
    levels = int(weights.q.abs().max()) if weights.q.numel() else 0
    if levels > MAX_PLANE_LEVELS or (weights.temporal and TemporalLayout(layout) is TemporalLayout.COLUMNS):
        return Columns(weights.q, weights.alpha, geometry, weights.temporal)
    return BitPlanes(weights, geometry)


def deploy_packed_layer(template: nn.Module, packed: PackedWeight, quantizer: Quantizer,
                        backend: DeployBackend | str = "cpu",
                        layout: TemporalLayout | str = TemporalLayout.BITPLANES) -> nn.Module:
    """A deployed layer straight from `packed`; `template` (the float or fake-quant conv/linear) gives stride,
    padding, groups and bias. Never forms the float effective weights."""
    from tawq_core.export.inference import source_of

    chosen = _backend(backend)
    geometry = Geometry.of(template)
    if tuple(packed.shape) != geometry.weight_shape:
        raise ConfigError(f"packed weight {tuple(packed.shape)} does not fit {type(template).__name__} "
                          f"{geometry.weight_shape}")
    source = source_of(quantizer)
    form = _form(packed, source, geometry, TemporalLayout(layout))
    form.use_kernels = chosen is DeployBackend.CPU
    layer = DeployedLayer.like(template, form, packed.timesteps, packed.quantizer)
    # what re-export writes back (tawq_core.export.packed_deployed): plain JSON, no arrays
    layer.quantizer_config, layer.packed_meta = source.config(), dict(packed.meta)
    return layer


def _replace(model: nn.Module, replacements: dict[int, nn.Module]) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):  # named_children() hides repeats
            if child is not None and id(child) in replacements:
                setattr(parent, name, replacements[id(child)])


def deploy(model: nn.Module, backend: DeployBackend | str = "cpu",
           layout: TemporalLayout | str = TemporalLayout.BITPLANES) -> nn.Module:
    """An eval-mode deep copy of `model` whose quantized layers are deployed layers (see module docstring)."""
    from tawq_core.quantization import quantized_layers

    _backend(backend)
    form = copy.deepcopy(model).eval()
    replacements: dict[int, nn.Module] = {}
    with torch.no_grad():
        for _, layer in quantized_layers(form):
            if id(layer) not in replacements:
                packed = layer.quantizer.pack(layer.weight, layer.timesteps)
                replacements[id(layer)] = deploy_packed_layer(layer, packed, layer.quantizer, backend, layout)
    _replace(form, replacements)
    for p in form.parameters():
        p.requires_grad_(False)
    return form


def spike_driven(model: nn.Module, backend: DeployBackend | str = "cpu") -> nn.Module:
    """The fp32 'spike-driven' reference: an eval-mode copy of an fp32 `model` whose spike-fed layers (those
    the default quantization policy would quantize: all but stem and head) accumulate fp32 weight columns
    for active inputs only. Same weights as `model`: what skipping silent inputs buys, without low bits."""
    from tawq_core.quantization import quantize, quantized_layers

    chosen = _backend(backend)
    form = copy.deepcopy(model).eval()
    if any(True for _ in quantized_layers(form)):
        raise ConfigError("spike_driven needs an fp32 model; deploy quantized models with tawq_core.deploy")
    quantize(form, "fp32", 1)  # marks the spike-fed layers by the default policy, weights unchanged
    replacements: dict[int, nn.Module] = {}
    with torch.no_grad():
        for _, layer in quantized_layers(form):
            geometry = Geometry.of(layer)
            weight = layer.weight.detach().float().unsqueeze(0)
            columns = Columns(weight, torch.ones(1, geometry.out_channels), geometry, temporal=False)
            columns.use_kernels = chosen is DeployBackend.CPU
            replacements[id(layer)] = DeployedLayer.like(layer, columns, 1, "fp32")
    _replace(form, replacements)
    for p in form.parameters():
        p.requires_grad_(False)
    return form


def kernels_used(module: nn.Module) -> dict[str, str]:
    """Deployed layer name -> the path its last forward ran ("cpu.bitplane-popcount", "dense.exact",
    "fallback.unpack-per-forward", ...; "not run yet" before any forward)."""
    return {name: m.last_kernel for name, m in module.named_modules() if isinstance(m, DeployedLayer)}


__all__ = ["DeployBackend", "DeployedLayer", "TemporalLayout", "deploy", "deploy_packed_layer", "kernels_used",
           "resident_bytes", "spike_driven"]
