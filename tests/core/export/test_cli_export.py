"""`tawq export CHECKPOINT --format onnx|nir|tawq --out FILE` on a real checkpoint."""

from __future__ import annotations

import json

import nir
import onnx
import pytest
import torch

import tawq_core
from tawq_core import cli as cli_module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model):
    """A quantized mlp checkpoint as `tawq train` writes it (metadata records how to rebuild it)."""
    model, options = tiny_model("mlp")
    meta = {"model": "mlp", "model_options": options, "quantizer": "tawq", "timesteps": 4}
    folder = tmp_path_factory.mktemp("run")
    tawq_core.save_checkpoint(folder / "model.safetensors", model, meta)
    return folder, model


def _export(capsys, *args: str) -> str:
    cli_module.main(["export", *args])  # returns normally on success
    out = capsys.readouterr()
    assert out.err == ""
    return out.out


@pytest.mark.parametrize("fmt", ["onnx", "nir", "tawq"])
def test_export_each_format(fmt, checkpoint, capsys, tmp_path):
    folder, model = checkpoint
    out = tmp_path / f"model.{fmt}"
    line = _export(capsys, str(folder), "--format", fmt, "--out", str(out))
    assert line.startswith(f"wrote {out} ({fmt}, {out.stat().st_size:,} bytes)")
    if fmt == "onnx":
        onnx.checker.check_model(onnx.load(str(out)))
        assert "onnxruntime matches torch" in line
    elif fmt == "nir":
        assert type(nir.read(str(out)).nodes["body.1"]).__name__ == "LIF"
    else:
        assert "bits/weight" in line and "reloaded bit-exactly" in line
        x = 1.5 * torch.randn(4, 3, 1, 6, 6)
        with torch.no_grad():
            assert torch.equal(tawq_core.load_packed(out, deploy=False)(x), model(x))


def test_json_report(checkpoint, capsys, tmp_path):
    folder, _ = checkpoint
    data = json.loads(_export(capsys, str(folder / "model.safetensors"), "--format", "tawq", "--out",
                              str(tmp_path / "m.tawq"), "--json"))
    assert data["bytes"] == data["header_bytes"] + data["payload_bytes"] + data["scale_bytes"] + data["fp_bytes"]
    assert data["bit_exact"] is True


def test_bad_checkpoint_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["export", str(bad), "--format", "onnx", "--out", str(tmp_path / "x.onnx")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
