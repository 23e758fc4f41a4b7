"""`tawq eval FILE --dataset NAME`: accuracy, latency and resident bytes of a deployed packed file."""

from __future__ import annotations

import json

import pytest
import torch

import tawq_core
from tawq_core import cli as cli_module
from tawq_core.export import load_packed
from tawq_core.plugin_api.data import encode_batch
from tawq_core.plugin_api.registry import create

T = 2


@pytest.fixture(scope="module")
def packed_file(tmp_path_factory):
    """A tiny tawq-quantized MLP for the digits dataset (1x8x8, 10 classes), exported self-contained."""
    options = {"num_classes": 10, "sample_shape": (1, 8, 8), "hidden": (16, 16)}
    torch.manual_seed(0)
    model = tawq_core.create("model", "mlp", **options)
    tawq_core.quantize(model, "tawq", T)
    path = tmp_path_factory.mktemp("eval") / "m.tawq"
    tawq_core.export(model.eval(), "tawq", path, model_name="mlp", model_options=options)
    return path


def _run(capsys, *args: str) -> str:
    cli_module.main(["eval", *args])
    out = capsys.readouterr()
    assert out.err == ""
    return out.out


def test_eval_reports_accuracy_latency_and_resident_bytes(packed_file, capsys):
    torch.set_num_threads(1)
    data = json.loads(_run(capsys, str(packed_file), "--dataset", "digits", "--batch-size", "8", "--repeats", "2",
                           "--warmup", "0", "--json"))
    splits = create("dataset", "digits")
    deployed = load_packed(packed_file)
    correct = total = 0
    with torch.inference_mode():
        for x, y in torch.utils.data.DataLoader(splits.test, batch_size=64):
            correct += int((deployed(encode_batch(x, splits.encoding, T)).argmax(1) == y).sum())
            total += len(y)
    assert data["top1"] == pytest.approx(100.0 * correct / total) and data["test_samples"] == total
    assert [t["batch_size"] for t in data["latency"]] == [1, 8] and all(t["median_s"] > 0 for t in data["latency"])
    assert data["resident_bytes"] > 0 and data["timesteps"] == T and data["backend"] == "cpu"
    kernels = set(data["kernels"].values())  # deployed layers name tawq's kernels; stem and head torch's op
    assert any(k.startswith("cpu.") for k in kernels)
    assert all(k.startswith(("cpu.", "dense.", "torch dense fp32")) for k in kernels)
    text = _run(capsys, str(packed_file), "--dataset", "digits", "--batch-size", "4", "--repeats", "1")
    assert "top-1:" in text and "batch 1 " in text and "batch 4 " in text and "resident weights:" in text


@pytest.mark.parametrize("args, fragment", [
    (["missing.tawq", "--dataset", "digits"], "does not exist"),
    (["{file}", "--dataset", "mnist1d"], "shape (1, 40)"),
    (["{file}", "--dataset", "nope"], "unknown dataset"),
    (["{file}", "--dataset", "digits", "--backend", "nope"], "unknown backend"),
])
def test_bad_input_is_one_line_exit_2(args, fragment, packed_file, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["eval", *[a.format(file=packed_file) for a in args]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
