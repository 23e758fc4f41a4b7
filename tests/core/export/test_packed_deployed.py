"""`load_packed` deploys straight from the packed codes; a deployed model packs again to the same file."""

from __future__ import annotations

import pytest
import torch

import tawq_core
from tawq_core import ConfigError
from tawq_core.deploy import DeployedLayer, deploy, kernels_used, resident_bytes
from tawq_core.export import load_packed, read_packed
from tawq_core.nn.quantization import quantized_layers
from tawq_core.plugin_api.registry import create


def _export(model, options, name, path):
    tawq_core.export(model, "tawq", path, model_name=name, model_options=options)
    return path


def _close(reference, deployed, x):
    with torch.no_grad():
        want, got = reference(x), deployed(x)
    assert (want - got).abs().max() <= 1e-4 * want.abs().max()
    assert torch.equal(want.argmax(-1), got.argmax(-1))


@pytest.mark.parametrize("name, quantizer", [("mlp", "tawq"), ("sew-resnet", "ptq8"), ("sew-resnet", "binary")])
def test_deployed_load_never_unpacks_to_float(name, quantizer, tiny_model, make_inputs, tmp_path, monkeypatch):
    model, options = tiny_model(name, quantizer=quantizer)
    path = _export(model, options, name, tmp_path / "m.tawq")
    fake_quant_bytes = resident_bytes(load_packed(path, deploy=False))

    def refuse(self, packed):
        raise AssertionError("the deployed form must be built from the packed codes, not unpacked floats")

    monkeypatch.setattr(type(create("quantizer", quantizer)), "unpack", refuse)
    loaded = load_packed(path)
    assert not loaded.training and not any(True for _ in quantized_layers(loaded))
    deployed = {n for n, m in loaded.named_modules() if isinstance(m, DeployedLayer)}
    assert deployed == set(read_packed(path)[1]["layers"])
    assert all(not p.requires_grad for p in loaded.parameters())
    _close(model, loaded, make_inputs(model, 4, seed=3))
    assert all(k.startswith(("cpu.", "dense.")) for k in kernels_used(loaded).values())  # no unpack fallback
    # less than the fake-quant reload, which keeps float effective weights and a float latent per layer
    assert resident_bytes(loaded) < fake_quant_bytes


def test_deploy_false_is_the_bit_exact_fake_quant_form(mlp, make_inputs, tmp_path):
    model, options = mlp
    path = _export(model, options, "mlp", tmp_path / "m.tawq")
    loaded = load_packed(path, deploy=False)
    assert [n for n, _ in quantized_layers(loaded)] == [n for n, _ in quantized_layers(model)]
    x = make_inputs(model, 3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_deployed_skeleton_load(mlp, make_inputs, tmp_path):
    model, options = mlp
    tawq_core.export(model, "tawq", tmp_path / "m.tawq")  # no model name: the skeleton is handed in
    loaded = load_packed(tmp_path / "m.tawq", model=tawq_core.create("model", "mlp", **options))
    _close(model, loaded, make_inputs(model, 3))


@pytest.mark.parametrize("name, quantizer", [("sew-resnet", "tawq"), ("mlp", "mtawq"), ("mlp", "ternary"),
                                             ("mlp", "ptq8")])
def test_reexport_of_a_deployed_model_writes_the_same_file(name, quantizer, tiny_model, make_inputs, tmp_path):
    model, options = tiny_model(name, quantizer=quantizer)
    a = _export(model, options, name, tmp_path / "a.tawq")
    for i, deployed in enumerate((load_packed(a), deploy(model))):
        report = tawq_core.export(deployed, "tawq", tmp_path / f"b{i}.tawq", model_name=name, model_options=options)
        assert report.bit_exact is True  # compared with its deployed reload
        (ta, ra), (tb, rb) = read_packed(a), read_packed(tmp_path / f"b{i}.tawq")
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        assert ra["layers"] == rb["layers"] and ra["quantizers"] == rb["quantizers"]


def test_deployed_model_exports_to_the_tawq_format_only(mlp, tmp_path):
    model, options = mlp
    with pytest.raises(ConfigError, match="tawq format only"):
        tawq_core.export(deploy(model), "onnx", tmp_path / "m.onnx")
