"""The deployed form: inference modules whose quantized layers keep only packed weights resident.

Training uses fake-quant layers (latent fp32 weights, effective weights computed on the fly). `deploy`
turns a quantized model into its inference form: every `QuantLinear`/`QuantConv1d`/`QuantConv2d` becomes a
`DeployedLayer` holding bit planes (tawq, mtawq, ternary, binary), int8 codes (ptq8) or, for a
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
from tawq_core.deploy.forms import BitPlanes, Int8Codes, SpikeColumns, UnpackFallback, WeightForm
from tawq_core.deploy.geometry import Geometry
from tawq_core.deploy.layer import DeployedLayer
from tawq_core.deploy.memory import resident_bytes
from tawq_core.nn.time_layout import TimeLayout
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer

MAX_PLANE_LEVELS = 7  # up to 3 magnitude bit planes; wider codes (ptq8) stay int8


class DeployBackend(str, Enum):
    """Where deployed layers run: ``cpu`` uses the compiled numba kernels; ``cuda`` runs bit-plane layers on
    the Triton kernel (`tawq_backends.kernels.triton_bitplane`, where Triton imports) and every other form
    on its exact dense torch path (float32, TF32 off); ``npu`` runs that dense path on the device (no
    deployed NPU kernels: torch_npu offers no int8 or bit-level matmul tawq could verify here); ``torch``
    forces the dense path everywhere. `kernels_used` names what each layer ran."""

    CPU = "cpu"
    CUDA = "cuda"
    NPU = "npu"
    TORCH = "torch"


class WeightLayout(str, Enum):
    """Resident layout of low-bit weights: bit planes (the default: ternary 2 bits per weight, binary 1,
    TaWQ T + 1; int8 rebuilt per call) or int8 per weight step (8 bits, 8·T for TaWQ; no rebuild)."""

    BITPLANES = "bitplanes"
    INT8 = "int8"


def _backend(backend: DeployBackend | str) -> DeployBackend:
    try:
        return DeployBackend(backend)
    except ValueError:
        raise ConfigError(f"unknown deploy backend {backend!r}; choose one of "
                          f"{[b.value for b in DeployBackend]}") from None


def _form(packed: PackedWeight, quantizer: Quantizer, geometry: Geometry, layout: WeightLayout) -> WeightForm:
    weights = integer_weights(packed, is_builtin(quantizer))
    if weights is None:
        return UnpackFallback(packed, quantizer)
    levels = int(weights.q.abs().max()) if weights.q.numel() else 0
    if levels > MAX_PLANE_LEVELS or layout is WeightLayout.INT8:
        return Int8Codes(weights, geometry)
    return BitPlanes(weights, geometry)


def deploy_packed_layer(template: nn.Module, packed: PackedWeight, quantizer: Quantizer,
                        backend: DeployBackend | str = "cpu",
                        layout: WeightLayout | str = WeightLayout.BITPLANES) -> nn.Module:
    """A deployed layer straight from `packed`; `template` (the float or fake-quant conv/linear) gives stride,
    padding, groups and bias. Never forms the float effective weights."""
    from tawq_core.export.inference import source_of

    chosen = _backend(backend)
    geometry = Geometry.of(template)
    if tuple(packed.shape) != geometry.weight_shape:
        raise ConfigError(f"packed weight {tuple(packed.shape)} does not fit {type(template).__name__} "
                          f"{geometry.weight_shape}")
    source = source_of(quantizer)
    form = _form(packed, source, geometry, WeightLayout(layout))
    form.use_kernels = chosen in (DeployBackend.CPU, DeployBackend.CUDA)
    layer = DeployedLayer.like(template, form, packed.timesteps, packed.quantizer)
    # what re-export writes back (tawq_core.export.packed_deployed): plain JSON, no arrays
    layer.quantizer_config, layer.packed_meta = source.config(), dict(packed.meta)
    return layer


def _replace(model: nn.Module, replacements: dict[int, nn.Module]) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):  # named_children() hides repeats
            if child is not None and id(child) in replacements:
                setattr(parent, name, replacements[id(child)])


def attach_time_layout(model: nn.Module, joined: dict[int, TimeLayout] | None = None) -> None:
    """Put `model`'s temporal deployed layers on a time layout fed B by the model's forward hook: the one in
    `joined` (id(deployed layer) -> the layout of the fake-quant layer it replaced) when given, else one new
    layout installed on `model` (packed loading: the fp32 skeleton has none). Call after swapping layers in."""
    from tawq_core.nn.time_layout import install_time_layout

    orphans = []
    for name, module in model.named_modules():
        if isinstance(module, DeployedLayer) and module.form.temporal:
            layout = (joined or {}).get(id(module))
            if layout is None:
                orphans.append((name, module))
            else:
                layout.attach(module, name)
    install_time_layout(model, orphans)


def deploy(model: nn.Module, backend: DeployBackend | str = "cpu",
           layout: WeightLayout | str = WeightLayout.BITPLANES) -> nn.Module:
    """An eval-mode deep copy of `model` whose quantized layers are deployed layers (see module docstring)."""
    from tawq_core.nn.quantization import quantized_layers

    _backend(backend)
    form = copy.deepcopy(model).eval()
    replacements: dict[int, nn.Module] = {}
    joined: dict[int, TimeLayout] = {}  # id(deployed layer) -> the layout its fake-quant layer followed
    with torch.no_grad():
        for _, layer in quantized_layers(form):
            if id(layer) not in replacements:
                packed = layer.pack()  # with the layer's quantizer state, if its quantizer keeps one
                replacements[id(layer)] = deploy_packed_layer(layer, packed, layer.quantizer, backend, layout)
                layout_ = layer.__dict__.get("time_layout")
                if layout_ is not None and layer.quantizer.temporal:
                    joined[id(replacements[id(layer)])] = layout_
    _replace(form, replacements)
    attach_time_layout(form, joined)
    for p in form.parameters():
        p.requires_grad_(False)
    return form


def spike_driven(model: nn.Module, backend: DeployBackend | str = "cpu") -> nn.Module:
    """The fp32 'spike-driven' reference: an eval-mode copy of an fp32 `model` whose spike-fed layers (those
    the default quantization policy would quantize: all but stem and head) accumulate fp32 weight columns
    for active inputs only. Same weights as `model`: what skipping silent inputs buys, without low bits."""
    from tawq_core.nn.quantization import quantize, quantized_layers

    chosen = _backend(backend)
    form = copy.deepcopy(model).eval()
    if any(True for _ in quantized_layers(form)):
        raise ConfigError("spike_driven needs an fp32 model; deploy quantized models with tawq_core.deploy")
    quantize(form, "fp32", 1)  # marks the spike-fed layers by the default policy, weights unchanged
    replacements: dict[int, nn.Module] = {}
    with torch.no_grad():
        for _, layer in quantized_layers(form):
            columns = SpikeColumns(layer.weight, Geometry.of(layer))
            columns.use_kernels = chosen is DeployBackend.CPU
            replacements[id(layer)] = DeployedLayer.like(layer, columns, 1, "fp32")
    _replace(form, replacements)
    for p in form.parameters():
        p.requires_grad_(False)
    return form


def kernels_used(module: nn.Module) -> dict[str, str]:
    """Deployed layer name -> the path its last forward ran ("cpu.int8-gemm.bitplanes", "cpu.fp32-gemm.int8",
    "cuda.triton-bitplane", "dense.exact", "fallback.unpack-per-forward", ...; "not run yet" before any
    forward)."""
    return {name: m.last_kernel for name, m in module.named_modules() if isinstance(m, DeployedLayer)}


__all__ = ["DeployBackend", "DeployedLayer", "WeightLayout", "attach_time_layout", "deploy", "deploy_packed_layer",
           "kernels_used", "resident_bytes", "spike_driven"]
