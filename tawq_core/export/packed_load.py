"""`load_packed`: rebuild a model from a packed tawq file, without its latent weights.

Two forms. The deployed form (default) puts a `tawq_core.deploy` layer built straight from each layer's
packed codes where the quantized layer goes: only the packed representation stays resident and tawq's
kernels run it (outputs equal the fake-quant model's within float rounding of the scale). The fake-quant
form (``deploy=False``, below) reproduces the exported model's outputs bit for bit.

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
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.export.inference import FrozenQuantizer
from tawq_core.export.packed_format import check_layer, read_packed
from tawq_core.nn.layers import STATE_PREFIX, is_quantized, quantized_layer_type
from tawq_core.nn.quantization import temporal_layers
from tawq_core.nn.time_layout import install_time_layout
from tawq_core.plugin_api.errors import CheckpointError, ConfigError, TawqError
from tawq_core.plugin_api.quantizer import PackedWeight, Quantizer


def _quantizer(name: str, info: dict[str, Any]) -> Quantizer:
    """Create the quantizer that unpacks these layers: recorded options, else the config keys the factory takes."""
    from tawq_core.plugin_api.registry import create, get_registry

    options = dict(info.get("options") or {})
    if not options:
        factory = get_registry().entry("quantizer", name).factory
        try:
            accepted = set(inspect.signature(factory).parameters)
        except (TypeError, ValueError):
            accepted = set()
        options = {k: v for k, v in (info.get("config") or {}).items() if k in accepted}
    quantizer = create("quantizer", name, **options)
    recorded = info.get("config")
    rebuilt = json.loads(json.dumps(quantizer.config(), sort_keys=True, default=str))
    if recorded and rebuilt != recorded:  # options were inferred, or the plugin changed: never unpack with a guess
        differ = sorted(k for k in {*recorded, *rebuilt} if recorded.get(k) != rebuilt.get(k))
        raise CheckpointError(f"quantizer {name!r} rebuilt here has config {differ} different from the one recorded "
                              "in the file; install the plugin version that exported it, or export it again")
    return quantizer


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
    from tawq_core.plugin_api.registry import create
    from tawq_core.training.checkpoint import _model_options

    if model is not None:
        if any(is_quantized(m) for m in model.modules()):
            raise ConfigError("load_packed(model=...) needs a fresh, unquantized model of the exported architecture")
        return model
    if not record.get("model"):
        raise CheckpointError(f"{path} records no model plugin name (it was exported from a model built outside "
                              "tawq); build the same fp32 model and call load_packed(path, model=that_model)")
    return create("model", record["model"], **_model_options(record))


def _template(model: nn.Module, name: str, layer: dict[str, Any]) -> nn.Module:
    """The skeleton's float layer where the file's quantized layer `name` goes, checked to fit."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise CheckpointError(f"the model has no layer {name!r} recorded in the packed file; rebuild the "
                              "architecture it was exported from") from None
    if quantized_layer_type(module) is None or tuple(module.weight.shape) != tuple(layer["shape"]):
        raise CheckpointError(f"layer {name!r} is {type(module).__name__} {tuple(getattr(module, 'weight', []).shape)}"
                              f", the packed file holds {layer['kind']} {tuple(layer['shape'])}; wrong architecture")
    return module


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _swap(model: nn.Module, name: str, layer: dict[str, Any], effective: Tensor, quantizer: FrozenQuantizer) -> None:
    module = _template(model, name, layer)
    new = quantized_layer_type(module).from_float(module, quantizer, quantizer.timesteps)
    with torch.no_grad():
        new.weight.copy_(effective.mean(0) if quantizer.temporal else effective)
    new.weight.requires_grad_(False)
    _set(model, name, new)


@dataclass(frozen=True)
class LoadedPacked:
    """A model rebuilt from a packed file and the file's header record (timesteps, model options...)."""

    model: nn.Module
    record: dict[str, Any]


def _state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[3:]: v for k, v in tensors.items() if k.startswith("fp/")}


def _check_fits(own: set[str], state: dict[str, Tensor]) -> None:
    if own != set(state):
        missing, extra = sorted(own - set(state)), sorted(set(state) - own)
        raise CheckpointError(f"packed file does not fit this model (missing: {missing[:3]}, unexpected: "
                              f"{extra[:3]}); rebuild the architecture it was exported from")


def _load_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"packed file does not fit this model ({str(exc).splitlines()[-1].strip()}); "
                              "rebuild the architecture it was exported from") from None


def _layers(p: Path, record: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, tuple[PackedWeight, Quantizer]]:
    """Every recorded layer's packed weight (checked by its quantizer) and the quantizer that reads it."""
    quantizers: dict[str, Quantizer] = {}
    layers = {}
    for name, layer in record["layers"].items():
        qname = layer["quantizer"]
        if qname not in quantizers:
            try:
                quantizers[qname] = _quantizer(qname, record["quantizers"].get(qname, {}))
            except TawqError as exc:
                raise CheckpointError(f"{p} needs quantizer {qname!r} to unpack: {exc}") from None
        packed = _packed(name, layer, tensors)
        check_layer(quantizers[qname], packed, name, p)
        layers[name] = (packed, quantizers[qname])
    return layers


def _deployed(model: nn.Module, record: dict[str, Any], tensors: dict[str, Tensor],
              layers: dict[str, tuple[PackedWeight, Quantizer]], backend: str) -> None:
    """Fill the fp32 skeleton's full-precision state, then put a deployed layer built from the packed
    codes (`deploy_packed_layer`) where each quantized layer goes: no float effective weight is formed."""
    from tawq_core.deploy import attach_time_layout, deploy_packed_layer

    latent = {f"{name}.weight" for name in record["layers"]}
    # the quantized layers' quantizer state is baked into their packed codes; deployed layers hold none
    state = {k: v for k, v in _state(tensors).items()
             if not (k.rpartition(".")[2].startswith(STATE_PREFIX) and k.rpartition(".")[0] in record["layers"])}
    _check_fits({k for k in model.state_dict() if k not in latent}, state)
    _load_state(model, state)
    for name, (packed, quantizer) in layers.items():
        template = _template(model, name, record["layers"][name])
        _set(model, name, deploy_packed_layer(template, packed, quantizer, backend=backend))
    attach_time_layout(model)  # temporal layers learn B from the model's forward, as after `quantize`


def _fake_quant(model: nn.Module, record: dict[str, Any], tensors: dict[str, Tensor],
                layers: dict[str, tuple[PackedWeight, Quantizer]]) -> None:
    """Today's bit-exact form: fake-quant layers serving ``unpack(payload, scales)`` (export verification)."""
    for name, (packed, quantizer) in layers.items():
        effective = quantizer.unpack(packed)
        _swap(model, name, record["layers"][name], effective,
              FrozenQuantizer(quantizer, effective, packed.timesteps, packed))
    install_time_layout(model, temporal_layers(model))
    latent = {f"{name}.weight" for name in record["layers"]}
    state = _state(tensors)
    _check_fits({k for k in model.state_dict() if k not in latent}, state)
    _load_state(model, state)


def load_packed_file(path: str | Path, model: nn.Module | None = None, device: torch.device | str = "cpu",
                     deploy: bool = True) -> LoadedPacked:
    """`load_packed`, also returning the file's header record."""
    p = Path(path)
    tensors, record = read_packed(p)
    model = _build(record, model, p)
    layers = _layers(p, record, tensors)
    if not deploy:
        _fake_quant(model, record, tensors, layers)
        return LoadedPacked(model.to(device).eval(), record)
    _deployed(model, record, tensors, layers, torch.device(device).type)
    model = model.to(device).eval()
    for param in model.parameters():  # an inference module: the stem, head and norms are frozen too
        param.requires_grad_(False)
    return LoadedPacked(model, record)


def load_packed(path: str | Path, model: nn.Module | None = None, device: torch.device | str = "cpu",
                deploy: bool = True) -> nn.Module:
    """Rebuild the model stored in a packed tawq file, in eval mode; never executes pickled code.

    ``deploy=True`` (default): the deployed form, built straight from the packed codes
    (`tawq_core.deploy.deploy_packed_layer` on `device`'s backend): quantized layers keep only their packed
    representation resident and run tawq's kernels. ``deploy=False``: the fake-quant model that reproduces
    the exported model's outputs bit for bit (what ``export(..., verify=True)`` checks). `model` is an fp32
    skeleton to fill instead of creating the recorded plugin model.
    """
    return load_packed_file(path, model, device, deploy).model
