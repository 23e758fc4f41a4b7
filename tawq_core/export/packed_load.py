"""`load_packed`: rebuild a model from a packed tawq file, bit-exactly, without its latent weights.

The model is created from the recorded plugin name and options (or handed in as a fresh fp32
skeleton, for models that are not tawq plugins: spikingjelly or snntorch networks). Each recorded
layer is swapped for its quantized class with a `FrozenQuantizer` serving ``unpack(payload, scales)``;
because `unpack(pack(w))` equals the quantizer's effective weights bit for bit and the quantized
layer's own forward runs, the outputs equal the exported model's exactly in eval mode. The
quantized layers' ``.weight`` (the latent weight, not stored) is set to the time-mean of the effective
weights and frozen: a loaded model is for inference, not for further quantization-aware training.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.errors import CheckpointError, ConfigError, TawqError
from tawq_core.export.inference import FrozenQuantizer
from tawq_core.export.packed_format import check_layer, read_packed
from tawq_core.layers import is_quantized, quantized_layer_type
from tawq_core.quantization import temporal_layers
from tawq_core.quantizer import PackedWeight, Quantizer
from tawq_core.time_layout import install_time_layout


def _quantizer(name: str, info: dict[str, Any]) -> Quantizer:
    """Create the quantizer that unpacks these layers: recorded options, else the config keys the factory takes."""
    from tawq_core.registry import create, get_registry

    options = dict(info.get("options") or {})
    if not options:
        factory = get_registry().entry("quantizer", name).factory
        try:
            accepted = set(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            accepted = set()
        options = {k: v for k, v in (info.get("config") or {}).items() if k in accepted}
    return create("quantizer", name, **options)


def _packed(name: str, layer: dict[str, Any], tensors: dict[str, Tensor]) -> PackedWeight:
    try:
        payload = {k: tensors[f"q/{name}/payload/{k}"] for k in layer["payload"]}
        scales = {k: tensors[f"q/{name}/scales/{k}"] for k in layer["scales"]}
        return PackedWeight(layer["quantizer"], tuple(layer["shape"]), int(layer["timesteps"]), payload, scales,
                            dict(layer.get("meta") or {}))
    except KeyError as exc:
        raise CheckpointError(f"packed file lacks tensor {exc} of layer {name!r}; the file is truncated or "
                              "was edited; export it again") from None


def _build(record: dict[str, Any], model: nn.Module | None, path: Path) -> nn.Module:
    from tawq_core.checkpoint import _model_options
    from tawq_core.registry import create

    if model is not None:
        if any(is_quantized(m) for m in model.modules()):
            raise ConfigError("load_packed(model=...) needs a fresh, unquantized model of the exported architecture")
        return model
    if not record.get("model"):
        raise CheckpointError(f"{path} records no model plugin name (it was exported from a model built outside "
                              "tawq); build the same fp32 model and call load_packed(path, model=that_model)")
    return create("model", record["model"], **_model_options(record))


def _swap(model: nn.Module, name: str, layer: dict[str, Any], effective: Tensor, quantizer: FrozenQuantizer) -> None:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise CheckpointError(f"the model has no layer {name!r} recorded in the packed file; rebuild the "
                              "architecture it was exported from") from None
    quant_type = quantized_layer_type(module)
    if quant_type is None or tuple(module.weight.shape) != tuple(layer["shape"]):
        raise CheckpointError(f"layer {name!r} is {type(module).__name__} {tuple(getattr(module, 'weight', []).shape)}"
                              f", the packed file holds {layer['kind']} {tuple(layer['shape'])}; wrong architecture")
    new = quant_type.from_float(module, quantizer, quantizer.timesteps)
    with torch.no_grad():
        new.weight.copy_(effective.mean(0) if quantizer.temporal else effective)
    new.weight.requires_grad_(False)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def load_packed(path: str | Path, model: nn.Module | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model stored in a packed tawq file (eval mode); `model` is an fp32 skeleton to fill instead
    of creating the recorded plugin model. Never executes pickled code."""
    p = Path(path)
    tensors, record = read_packed(p)
    model = _build(record, model, p)
    quantizers: dict[str, Quantizer] = {}
    for name, layer in record["layers"].items():
        qname = layer["quantizer"]
        if qname not in quantizers:
            try:
                quantizers[qname] = _quantizer(qname, record["quantizers"].get(qname, {}))
            except TawqError as exc:
                raise CheckpointError(f"{p} needs quantizer {qname!r} to unpack: {exc}") from None
        packed = _packed(name, layer, tensors)
        check_layer(quantizers[qname], packed, name, p)
        effective = quantizers[qname].unpack(packed)
        _swap(model, name, layer, effective, FrozenQuantizer(quantizers[qname], effective, packed.timesteps, packed))
    install_time_layout(model, temporal_layers(model))
    state = {k[3:]: v for k, v in tensors.items() if k.startswith("fp/")}
    latent = {f"{name}.weight" for name in record["layers"]}
    own = {k for k in model.state_dict() if k not in latent}
    if own != set(state):
        missing, extra = sorted(own - set(state)), sorted(set(state) - own)
        raise CheckpointError(f"packed file does not fit this model (missing: {missing[:3]}, unexpected: "
                              f"{extra[:3]}); rebuild the architecture it was exported from")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"packed file does not fit this model ({str(exc).splitlines()[-1].strip()}); "
                              "rebuild the architecture it was exported from") from None
    return model.to(device).eval()
