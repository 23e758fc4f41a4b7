"""Packed tawq format: bit-exact reload, byte accounting that adds up, safe loading, rebuild without the registry."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import tawq_core
from tawq_core import CheckpointError
from tawq_core.export import load_packed, read_packed
from tawq_core.nn.quantization import quantized_layers


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name, quantizer", [("mlp", "tawq"), ("sew-resnet", "tawq"), ("mlp", "mtawq"),
                                             ("mlp", "ptq8"), ("mlp", "binary"), ("mlp", "ternary")])
def test_reload_is_bit_exact(name, quantizer, tiny_model, make_inputs, tmp_path):
    model, options = tiny_model(name, quantizer=quantizer)
    report = tawq_core.export(model, "tawq", tmp_path / "m.tawq", model_name=name, model_options=options)
    assert report.bit_exact is True
    loaded = tawq_core.load_packed(tmp_path / "m.tawq", deploy=False)  # the fake-quant form
    x = make_inputs(model, 4, seed=7)
    assert torch.equal(_outputs(loaded, x), _outputs(model, x))
    assert not loaded.training
    names = [n for n, _ in quantized_layers(loaded)]
    assert names == [n for n, _ in quantized_layers(model)] and names
    for (_, a), (_, b) in zip(quantized_layers(model), quantized_layers(loaded), strict=True):
        assert b.quantizer.name == quantizer and torch.equal(a.effective_weight(), b.effective_weight())
        assert not b.weight.requires_grad


def test_file_size_is_header_plus_packed_bits_plus_full_precision(tiny_model, tmp_path):
    model, options = tiny_model("sew-resnet")
    report = tawq_core.export(model, "tawq", tmp_path / "s.tawq", model_name="sew-resnet", model_options=options)
    path = tmp_path / "s.tawq"
    # the quantizer's own accounting, layer by layer
    packs = [layer.quantizer.pack(layer.weight, layer.timesteps) for _, layer in quantized_layers(model)]
    numel = sum(p.numel for p in packs)
    packed_bits = sum(p.bits_per_weight_total * p.numel for p in packs)
    fp_bytes = sum(t.numel() * t.element_size() for k, t in model.state_dict().items()
                   if k not in {f"{n}.weight" for n, _ in quantized_layers(model)})
    with path.open("rb") as f:
        header = 8 + int.from_bytes(f.read(8), "little")
    assert report.header_bytes == header and header % 8 == 0
    assert path.stat().st_size == report.file_bytes == header + round(packed_bits / 8) + fp_bytes
    assert report.payload_bytes + report.scale_bytes == round(packed_bits / 8)
    assert report.quantized_weights == numel
    assert report.bits_per_weight == pytest.approx(sum(p.bits_per_weight * p.numel for p in packs) / numel)
    assert report.bits_per_weight <= 3.2 + 1e-9  # <= 9 patterns at T=4: five digits in two bytes
    # the stated overhead: the JSON header, tensor index included, is a few hundred bytes per tensor at most
    tensors, record = read_packed(path)
    assert header <= 4096 + 200 * len(tensors)
    assert record["timesteps"] == 4 and record["quantizers"]["tawq"]["config"]["name"] == "tawq"
    assert record["policy"]["quantized"] == [n for n, _ in quantized_layers(model)]
    assert {e["name"]: e["role"] for e in record["policy"]["full_precision"]} == {"stem.0.0": "stem", "head": "head"}
    assert not any(k.endswith(".weight") and k[3:-7] in record["layers"] for k in tensors if k.startswith("fp/"))


def test_model_without_a_registry_name_loads_into_a_skeleton(mlp, make_inputs, tmp_path):
    model, options = mlp
    report = tawq_core.export(model, "tawq", tmp_path / "m.tawq")  # no model name: not self-contained
    assert report.bit_exact is None
    with pytest.raises(CheckpointError, match="load_packed\\(path, model="):
        load_packed(tmp_path / "m.tawq")
    skeleton = tawq_core.create("model", "mlp", **options)
    loaded = load_packed(tmp_path / "m.tawq", model=skeleton, deploy=False)
    x = make_inputs(model, 3)
    assert torch.equal(_outputs(loaded, x), _outputs(model, x))
    with pytest.raises(CheckpointError, match="does not fit|wrong architecture"):
        load_packed(tmp_path / "m.tawq", model=tawq_core.create("model", "mlp", **{**options, "hidden": (24, 8)}))


def test_reexporting_a_loaded_model_keeps_the_codes(mlp, tmp_path):
    model, options = mlp
    tawq_core.export(model, "tawq", tmp_path / "a.tawq", model_name="mlp", model_options=options)
    tawq_core.export(load_packed(tmp_path / "a.tawq"), "tawq", tmp_path / "b.tawq", model_name="mlp",
                     model_options=options)
    a, b = read_packed(tmp_path / "a.tawq")[0], read_packed(tmp_path / "b.tawq")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loading_refuses_pickles_foreign_and_newer_files(mlp, tmp_path):
    model, options = mlp
    evil = tmp_path / "evil.tawq"
    evil.write_bytes(pickle.dumps({"state": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="not a tawq packed file"):
        load_packed(evil)
    checkpoint = tawq_core.save_checkpoint(tmp_path / "ckpt.safetensors", model, {"model": "mlp"})
    with pytest.raises(CheckpointError, match="not a tawq packed model"):
        load_packed(checkpoint)
    path = tmp_path / "m.tawq"
    tawq_core.export(model, "tawq", path, model_name="mlp", model_options=options)
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    record = json.loads(header["__metadata__"]["tawq"])
    record["format_version"] = 99
    header["__metadata__"]["tawq"] = json.dumps(record)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (tmp_path / "new.tawq").write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size:])
    with pytest.raises(CheckpointError, match="upgrade tawq"):
        load_packed(tmp_path / "new.tawq")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_packed(tmp_path / "missing.tawq")
