"""Per-layer mixed precision: `QuantPolicy(layer_quantizers=...)`, its report, and the packed round trip."""

from __future__ import annotations

import pytest
import torch

import tawq_core
from tawq_core import QuantPolicy, TawqError, quantize, quantized_layers

T = 2
MIXED = QuantPolicy(layer_quantizers={"body.2.*": "ptq8"})


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return tawq_core.create("model", "mlp", num_classes=10, sample_shape=(1, 8, 8), hidden=[16, 16, 16])


def test_globs_choose_the_quantizer_of_each_layer_and_the_report_records_it():
    model = mlp()
    report = quantize(model, "tawq", T, MIXED)
    chosen = {name: layer.quantizer.name for name, layer in quantized_layers(model)}
    assert chosen == {"body.2.0": "ptq8", "body.4.0": "tawq"}
    assert [(s.name, s.quantizer) for s in report.swapped] == [("body.2.0", "ptq8"), ("body.4.0", "tawq")]
    assert report.to_dict()["quantizers"] == ["ptq8", "tawq"]
    assert "with ptq8+tawq" in str(report) and "body.2.0  QuantLinear         256  ptq8" in str(report)
    assert {s.name for s in report.skipped} == {"head", "body.0.0"}  # which layers: unchanged by the globs


def test_first_matching_glob_wins_and_instances_are_accepted():
    ternary = tawq_core.create("quantizer", "ternary")
    policy = QuantPolicy(layer_quantizers=[("body.4.*", ternary), ("body.*", "binary")])
    model = mlp()
    quantize(model, "tawq", T, policy)
    layers = dict(quantized_layers(model))
    assert layers["body.4.0"].quantizer is ternary and layers["body.2.0"].quantizer.name == "binary"


@pytest.mark.parametrize("layer_quantizers, message", [
    ({"head": "ptq8"}, "glob 'head' matches none of the layers the policy quantizes"),
    ({"body.2.*": "nope"}, "unknown quantizer 'nope'"),
    ({"": "ptq8"}, "must map non-empty globs"),
    ("body.2.*=ptq8", "must map non-empty globs"),
])
def test_bad_layer_quantizers_are_one_line_config_errors(layer_quantizers, message):
    model = mlp()
    with pytest.raises(TawqError, match=message):  # ConfigError; PluginNotFound for the unknown name
        quantize(model, "tawq", T, QuantPolicy(layer_quantizers=layer_quantizers))
    assert not list(quantized_layers(model))  # refused before anything was swapped


def test_mixed_model_packs_and_loads_back_with_each_layers_quantizer(tmp_path):
    model = mlp()
    quantize(model, "tawq", T, MIXED)
    model.eval()
    x = torch.rand(T, 3, 1, 8, 8)
    path = tmp_path / "mixed.tawq"
    tawq_core.export(model, "tawq", path, example=x, model_name="mlp",
                     model_options={"num_classes": 10, "sample_shape": [1, 8, 8], "hidden": [16, 16, 16]})
    loaded = tawq_core.load_packed(path, deploy=False)
    assert {n: layer.quantizer.name for n, layer in quantized_layers(loaded)} == {"body.2.0": "ptq8",
                                                                                   "body.4.0": "tawq"}
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))
