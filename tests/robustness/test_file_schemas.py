"""#19 class 4: every file tawq reads back is validated against its schema; a violation is one
`CheckpointError` / `ConfigError` naming the file and the field, never a model with other outputs or a
KeyError from deep inside.

Packed files: the record, the tensor set, finiteness and, through `Quantizer.check_packed`, each built-in
quantizer's code set, dtypes and sizes. Checkpoints: the record's fields, and a packed file passed as one.
results.json: every field `tawq report` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import cli_in_process
from safetensors.torch import load_file, save_file

from tawq_core import CheckpointError, ConfigError, build_from_checkpoint, create, quantize, save_checkpoint
from tawq_core.bench.report import load_results
from tawq_core.export import export, load_packed

OPTIONS = {"num_classes": 10, "sample_shape": [1, 8, 8], "hidden": [16, 16]}
QUANTIZERS = ("fp32", "ptq8", "binary", "ternary", "tawq", "mtawq")


def _packed(tmp_path: Path, quantizer: str) -> Path:
    torch.manual_seed(0)
    model = create("model", "mlp", **{**OPTIONS, "sample_shape": (1, 8, 8)})
    quantize(model, create("quantizer", quantizer), 2)
    path = tmp_path / f"{quantizer}.tawq"
    export(model.eval(), "tawq", path, timesteps=2, model_name="mlp", model_options=OPTIONS, verify=False)
    return path


def _edited(path: Path, tensors=None, record=None) -> Path:
    """A copy of a safetensors file with its tensors and/or its tawq record edited in place."""
    data = load_file(str(path))
    with path.open("rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    meta = header["__metadata__"]
    if tensors:
        tensors(data)
    if record:
        parsed = json.loads(meta["tawq"])
        record(parsed)
        meta["tawq"] = json.dumps(parsed)
    out = path.with_name(f"edited-{path.name}")
    save_file(data, str(out), metadata=meta)
    return out


def _key(data: dict, suffix: str) -> str:
    return next(k for k in data if k.endswith(suffix))


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_every_builtin_accepts_what_it_packed(tmp_path, quantizer):
    """The validation hook must not refuse valid files: pack -> check_packed -> load, for every built-in."""
    load_packed(_packed(tmp_path, quantizer))


def _set(suffix: str, index, value):
    def edit(data):
        data[_key(data, suffix)][index] = value
    return edit


def _retype(suffix: str, dtype):
    def edit(data):
        key = _key(data, suffix)
        data[key] = data[key].to(dtype)
    return edit


@pytest.mark.parametrize(("quantizer", "edit", "words"), [
    # codes outside the quantizer's code set (the example) ...
    ("ptq8", _set("payload/codes", 0, -128), "codes holds values in [-128, 127], outside the code set [-127, 127]"),
    ("ternary", _set("payload/trits", 0, 250), "trits holds codes outside the quantizer's 3 states"),
    ("tawq", _set("scales/codebook", (0, 0), 3), "codebook holds values in [-1, 3], outside the code set [-1, 1]"),
    # ... a NaN alpha, a changed payload dtype, a zero scale
    ("tawq", _set("scales/alpha", (0, 0), float("nan")), "tensor 'q/body.2.0/scales/alpha' (1 NaN, 0 inf"),
    ("tawq", _retype("payload/patterns", torch.int16), "payload tensor 'patterns' has dtype int16, expected uint8"),
    ("ptq8", _retype("payload/codes", torch.uint8), "payload tensor 'codes' has dtype uint8, expected int8"),
    ("ptq8", _set("scales/scale", 0, 0.0), "scale holds values <= 0"),
    ("binary", _retype("scales/alpha", torch.float16), "scales tensor 'alpha' has dtype float16, expected float32"),
])
def test_packed_contents_outside_the_quantizer_are_refused(tmp_path, quantizer, edit, words):
    edited = _edited(_packed(tmp_path, quantizer), tensors=edit)
    with pytest.raises(CheckpointError) as info:
        load_packed(edited)
    message = str(info.value)
    assert f"packed file {edited}" in message and words in message and "\n" not in message


@pytest.mark.parametrize(("tensors", "record", "words"), [
    (lambda d: d.pop(_key(d, "scales/alpha")), None, "q/body.2.0/scales/alpha missing"),
    (lambda d: d.__setitem__("q/extra/payload/x", torch.zeros(3, dtype=torch.uint8)), None,
     "q/extra/payload/x not in the record"),
    (None, lambda r: r.__setitem__("timesteps", "four"), "field 'timesteps' must be an integer >= 1, got 'four'"),
    (None, lambda r: r["layers"]["body.2.0"].__setitem__("shape", [16, -1]), "field layers.body.2.0.shape"),
    (None, lambda r: r["layers"]["body.2.0"].__setitem__("quantizer", "nope"), "field layers.body.2.0.quantizer"),
    (None, lambda r: r["quantizers"]["tawq"].__setitem__("options", [1]), "field quantizers.tawq.options"),
    (lambda d: d[_key(d, "fp/head.bias")].__setitem__(0, float("inf")), None, "'fp/head.bias' (0 NaN, 1 inf"),
])
def test_packed_keys_and_record_are_validated(tmp_path, tensors, record, words):
    edited = _edited(_packed(tmp_path, "tawq"), tensors=tensors, record=record)
    with pytest.raises(CheckpointError, match="packed file") as info:
        load_packed(edited)
    assert words in str(info.value)


def _checkpoint(tmp_path: Path, **meta) -> Path:
    model = create("model", "mlp", **{**OPTIONS, "sample_shape": (1, 8, 8)})
    return save_checkpoint(tmp_path / "run" / "model.safetensors", model,
                           {"model": "mlp", "model_options": OPTIONS, "timesteps": 2, **meta})


def test_checkpoint_with_timesteps_four_is_one_line(tmp_path):
    """The issue's example: `"timesteps": "four"` crashed in checkpoint.py."""
    path = _checkpoint(tmp_path, timesteps="four")
    cli_in_process("export", path, "--format", "tawq", "--out", tmp_path / "m.tawq").one_line_error(
        f"checkpoint {path}: field 'timesteps' must be an integer >= 1, got 'four'")


def test_checkpoint_fields_of_the_wrong_type(tmp_path):
    path = _checkpoint(tmp_path, model_options=[1, 2])
    with pytest.raises(CheckpointError, match="field 'model_options' must be a table of model options"):
        build_from_checkpoint(path)


def test_packed_file_given_as_a_checkpoint_is_one_line(tmp_path):
    """The issue's example: re-exporting a packed file crashed in checkpoint.py."""
    packed = _packed(tmp_path, "tawq")
    cli_in_process("export", packed, "--format", "onnx", "--out", tmp_path / "m.onnx").one_line_error(
        f"{packed} is a packed tawq file (inference only, no latent weights), not a training checkpoint")


RESULTS = {
    "format": 1, "run_id": "tiny-0123", "config_hash": "ab" * 32, "complete": True, "notes": [], "provenance": {},
    "config": {"name": "tiny", "model": "mlp", "dataset": "digits", "timesteps": 2, "seeds": [0],
               "quantizers": ["fp32", "tawq"], "backends": ["cpu"]},
    "records": [{"quantizer": q, "backend": "cpu", "seed": 0, "status": "ok", "top1": top1, "mode": "qat",
                 "storage": {"bits_per_weight": bits}, "energy": {"exact": {"value": 1e-6, "method": "m"}}}
                for q, top1, bits in (("fp32", 0.9, 32.0), ("tawq", 0.85, 1.6))],
}


def _results(tmp_path: Path, edit) -> Path:
    data = json.loads(json.dumps(RESULTS))
    edit(data)
    (tmp_path / "results.json").write_text(json.dumps(data))
    return tmp_path


def test_valid_results_render(tmp_path):
    result = cli_in_process("report", _results(tmp_path, lambda d: None), "--no-plots")
    assert result.returncode == 0 and "tawq" in result.stdout, result.stderr


@pytest.mark.parametrize(("edit", "field"), [
    (lambda d: d["records"][1].__setitem__("seed", "0"), "records[1].seed must be an integer"),
    (lambda d: d["records"][0].pop("quantizer"), "records[0].quantizer is missing (must be a string)"),
    (lambda d: d["records"][1].__setitem__("top1", float("nan")), "records[1].top1 must be a number or null"),
    (lambda d: d["records"][1]["storage"].__setitem__("bits_per_weight", "1.6"), "records[1].storage.bits_per_weight"),
    (lambda d: d["records"][0]["energy"]["exact"].__setitem__("value", "x"), "records[0].energy.exact.value"),
    (lambda d: d["config"].__setitem__("quantizers", "fp32,tawq"), "config.quantizers must be a list"),
    (lambda d: d.__setitem__("records", {}), "records must be a list"),
])
def test_hand_edited_results_json_is_one_line(tmp_path, edit, field):
    run = _results(tmp_path, edit)
    result = cli_in_process("report", run, "--no-plots")
    result.one_line_error(f"{run / 'results.json'}: field {field}", "re-run the bench to rebuild it")
    with pytest.raises(ConfigError):
        load_results(run)


def test_a_recorded_quantizer_config_the_installed_plugin_does_not_rebuild_is_refused(tmp_path):
    """Options inferred from the recorded config (or a changed plugin) must reproduce that config exactly;
    unpacking with a quantizer that merely shares the name would be a guess."""
    def edit(record):
        record["quantizers"]["mtawq"]["options"] = {}
        record["quantizers"]["mtawq"]["config"]["levels"] = 7
    edited = _edited(_packed(tmp_path, "mtawq"), record=edit)
    with pytest.raises(CheckpointError, match=r"quantizer 'mtawq' rebuilt here has config \['levels'\] different"):
        load_packed(edited)
