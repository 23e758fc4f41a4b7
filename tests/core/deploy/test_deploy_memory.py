"""A deployed model holds no float copy of a quantized weight anywhere (buffers, attributes, caches), its
resident bytes are what `resident_bytes` counts, and third-party quantizers deploy through the fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deploy_models import T, quantized_model
from torch import Tensor, nn

from tawq_core import PackedWeight, Quantizer, QuantMode, quantize
from tawq_core.deploy import DeployedLayer, deploy, kernels_used, resident_bytes
from tawq_core.deploy.memory import reachable_arrays
from tawq_core.nn.packing import pack_digits, unpack_digits


def _float_arrays(module: nn.Module) -> list[tuple[str, Tensor]]:
    found = []
    for where, array in reachable_arrays(module):
        t = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
        if t.is_floating_point():
            found.append((where, t.detach()))
    return found


def _copies_of(weights: list[Tensor], arrays: list[tuple[str, Tensor]]) -> list[str]:
    """Names of arrays holding any of `weights` (same values, any shape: a flattened or permuted copy counts
    when its sorted values match)."""
    hits = []
    for where, t in arrays:
        for w in weights:
            if t.numel() == w.numel() and torch.equal(t.reshape(-1).sort().values, w.reshape(-1).sort().values):
                hits.append(where)
    return hits


@pytest.mark.parametrize("quantizer", ["tawq", "ternary", "binary", "ptq8"])
@pytest.mark.parametrize("model_name", ["sew-resnet-2d", "spikingformer"])
def test_no_float_copy_of_a_quantized_weight(model_name, quantizer):
    model, x = quantized_model(model_name, quantizer)
    weights = []
    for _, layer in model.named_modules():
        if hasattr(layer, "effective_weight"):
            effective = layer.effective_weight().detach()
            weights += [layer.weight.detach(), effective, *(effective if effective.dim() > layer.weight.dim() else [])]
    deployed = deploy(model)
    with torch.no_grad():
        deployed(x)  # caches, if any, exist after a forward
    arrays = _float_arrays(deployed)
    assert _copies_of(weights, arrays) == []
    for name, layer in deployed.named_modules():  # deployed layers hold only alpha/bias as floats
        if isinstance(layer, DeployedLayer):
            for where, t in _float_arrays(layer):
                assert t.numel() <= T * layer.geometry.out_channels, (name, where)
    assert resident_bytes(deployed) < resident_bytes(model)


@pytest.mark.parametrize("quantizer, bits", [("ternary", 2), ("binary", 1), ("tawq", T + 1), ("ptq8", 8)])
def test_resident_bits_per_weight(quantizer, bits):
    """Payload bits per quantized weight held resident: ternary 2, binary 1, TaWQ T + 1 (one sign plane,
    one non-zero plane per step), ptq8 8. Plane rows are whole 64-bit words: the middle layer's fan-in is 64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Conv2d(16, 32, 2), nn.Conv2d(32, 8, 1))  # stem, 16·2·2, head
    quantize(model, quantizer, T)
    deployed = deploy(model)
    layer = deployed[1]
    payload = sum(t.numel() * t.element_size() for key, t in layer.state_dict().items()
                  if key.startswith("form.") and not key.endswith("alpha"))
    assert 8 * payload / layer.form.integer_weights(layer.geometry).q[0].numel() == bits


class SignQuantizer(Quantizer):
    """A third-party-style quantizer tawq has no kernel for: sign(w) times the tensor's mean |w|."""

    name = "test-sign"
    mode = QuantMode.QAT
    temporal = False

    def weights(self, w: Tensor, timesteps: int) -> Tensor:
        return torch.where(w >= 0, 1.0, -1.0) * w.abs().mean()

    def pack(self, w: Tensor, timesteps: int) -> PackedWeight:
        return PackedWeight(self.name, tuple(w.shape), timesteps, payload={"bits": pack_digits((w >= 0).long(), 2)},
                            scales={"scale": w.abs().mean().reshape(1)})

    def unpack(self, packed: PackedWeight) -> Tensor:
        bits = unpack_digits(packed.payload["bits"], 2, packed.numel).reshape(packed.shape)
        return (2.0 * bits - 1) * packed.scales["scale"]


def test_third_party_quantizer_deploys_through_the_unpack_fallback():
    model, x = quantized_model("sew-resnet-1d", SignQuantizer())
    deployed = deploy(model)
    with torch.no_grad():
        expected, got = model(x), deployed(x)
    assert set(kernels_used(deployed).values()) == {"fallback.unpack-per-forward"}
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert torch.equal(got.argmax(1), expected.argmax(1))
    weights = [layer.weight.detach() for layer in model.modules() if hasattr(layer, "effective_weight")]
    weights += [layer.effective_weight().detach() for layer in model.modules() if hasattr(layer, "effective_weight")]
    assert _copies_of(weights, _float_arrays(deployed)) == []


def test_resident_bytes_counts_attributes_once_per_storage():
    module = nn.Linear(4, 4, bias=False)  # 64 bytes of weight
    module.cache = [module.weight.detach().view(-1)]  # a view of the same storage: not counted again
    module.table = {"a": np.zeros(10, np.float32)}  # 40 bytes, in a dict attribute
    module.plain = type("Holder", (), {})()
    module.plain.array = torch.zeros(3, dtype=torch.int64)  # 24 bytes, on a plain object attribute
    assert resident_bytes(module) == 64 + 40 + 24
