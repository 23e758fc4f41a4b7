"""What the packed format stores per layer, for fake-quant and deployed models alike (re-export).

A deployed layer holds its weights in a kernel layout (bit planes, int8 columns) or, for a quantizer tawq
has no kernel for, the `PackedWeight` itself. Re-export recovers the integer weights and scales from the
kernel layout (``form.integer_weights``, exact) and encodes them in the quantizer's own storage layout,
the inverse of `tawq_core.deploy.codes`; the codes, side tables and meta come out identical to the file
the layer was loaded from, so ``export(load_packed(path), "tawq", ...)`` reproduces ``path``'s tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tawq_core.deploy import DeployedLayer
from tawq_core.deploy.codes import IntegerWeights
from tawq_core.deploy.forms import UnpackFallback
from tawq_core.export.inference import source_of
from tawq_core.nn.packing import pack_digits, pack_patterns
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.quantizer import PackedWeight

Encoded = tuple[dict[str, Tensor], dict[str, Tensor]]


def _calcium(iw: IntegerWeights) -> Encoded:
    codes, codebook = pack_patterns(iw.q)
    return {"patterns": codes}, {"alpha": iw.alpha.contiguous(), "codebook": codebook}


def _ternary(iw: IntegerWeights) -> Encoded:
    return {"trits": pack_digits(iw.q[0].to(torch.int64) + 1, 3)}, {"alpha": iw.alpha.reshape(-1).contiguous()}


def _binary(iw: IntegerWeights) -> Encoded:
    return {"signs": pack_digits(iw.q[0] > 0, 2)}, {"alpha": iw.alpha.reshape(-1).contiguous()}


def _ptq8(iw: IntegerWeights) -> Encoded:
    return {"codes": iw.q[0].contiguous()}, {"scale": iw.alpha.reshape(-1).contiguous()}


#: quantizer name -> encoder of its storage layout (decoders: `tawq_core.deploy.codes`)
_ENCODERS: dict[str, Callable[[IntegerWeights], Encoded]] = {
    "tawq": _calcium, "mtawq": _calcium, "ternary": _ternary, "binary": _binary, "ptq8": _ptq8,
}


def deployed_layers(model: nn.Module) -> list[tuple[str, DeployedLayer]]:
    """(name, layer) of every deployed layer, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DeployedLayer)]


def packed_of(name: str, layer: DeployedLayer) -> PackedWeight:
    """The `PackedWeight` that `layer` was deployed from (bit-identical codes and scales)."""
    form = layer.form
    if isinstance(form, UnpackFallback):
        return form.packed()
    encode = _ENCODERS.get(layer.source)
    if encode is None:  # the fp32 spike-driven form: its weights are fp32, there is nothing to pack
        raise ConfigError(f"layer {name!r} runs {layer.source} weights deployed spike-driven; export the fp32 "
                          "model it was made from instead")
    payload, scales = encode(form.integer_weights(layer.geometry))
    return PackedWeight(layer.source, layer.geometry.weight_shape, layer.timesteps, payload, scales,
                        dict(layer.packed_meta))


#: the fake-quant class a deployed layer of each geometry replaced (the record's "kind")
_KINDS = {"linear": "QuantLinear", "conv1d": "QuantConv1d", "conv2d": "QuantConv2d"}


@dataclass(frozen=True)
class LayerPack:
    """One layer as the packed format stores it."""

    name: str
    packed: PackedWeight
    quantizer: str
    config: dict[str, Any]  # the quantizer's config(): what reloading needs to rebuild it
    kind: str
    not_fp: frozenset[str]  # the layer's state keys that are not written as full-precision tensors


def packed_layers(model: nn.Module) -> Iterator[LayerPack]:
    """Every fake-quant layer (packed by its quantizer) and every deployed layer (re-encoded) of `model`."""
    from tawq_core.nn.quantization import quantized_layers

    for name, layer in quantized_layers(model):
        source = source_of(layer.quantizer)
        yield LayerPack(name, layer.pack(), source.name, source.config(),
                        type(layer).__name__, frozenset({f"{name}.weight" if name else "weight"}))
    for name, layer in deployed_layers(model):
        prefix = f"{name}." if name else ""
        packed = packed_of(name, layer)
        yield LayerPack(name, packed, packed.quantizer, dict(layer.quantizer_config),
                        _KINDS[layer.geometry.kind.value],
                        frozenset(prefix + k for k in layer.state_dict() if k != "bias"))
