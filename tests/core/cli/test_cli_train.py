"""`tawq train` end to end on the embedded `digits` data: fp32, QAT and PTQ, outputs and one-line errors."""

from __future__ import annotations

import json

import pytest

import tawq_core
from tawq_core import cli as cli_module
from tawq_core.plugin_api.registry import create
from tawq_core.training.checkpoint import build_from_checkpoint


def run(*args: str) -> int:
    try:
        cli_module.main(["train", *args])
    except SystemExit as exc:
        return int(exc.code)
    return 0


FAST = ("--dataset", "digits", "--epochs", "2", "--batch-size", "64", "--lr", "0.01", "--timesteps", "2",
        "--no-progress")


def test_fp32_training_writes_checkpoint_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("--model", "mlp", "--model-option", "hidden=[48]", "--seed", "3", *FAST, "--out", str(out)) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.6 and summary["quantizer"] is None
    assert summary["model_options"] == {"num_classes": 10, "sample_shape": [1, 8, 8], "hidden": [48]}
    assert summary["train"]["seed"] == 3 and summary["train"]["timesteps"] == 2 and summary["steps"] == 2 * 21
    assert summary["provenance"]["tawq"] == tawq_core.__version__ and summary["train_seconds"] > 0
    model, meta = build_from_checkpoint(out)
    splits = create("dataset", "digits")
    acc = tawq_core.evaluate(model, splits.test, splits, timesteps=2)
    assert acc == pytest.approx(summary["test_accuracy"]) and meta["model_options"]["hidden"] == [48]


@pytest.mark.parametrize("quantizer, applied", [("binary", "before training (QAT)"),
                                                ("ptq8", "after training (PTQ)")])
def test_quantized_training_records_and_rebuilds(tmp_path, quantizer, applied):
    out = tmp_path / quantizer
    options = ("--model", "mlp", "--model-option", "hidden=[32,32]", "--quantizer", quantizer)
    assert run(*options, *FAST, "--eval-every", "0", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [h["eval_accuracy"] for h in summary["history"]] == [None, None]
    assert summary["quantization"]["applied"] == applied
    swapped = [layer["name"] for layer in summary["quantization"]["report"]["swapped"]]
    assert len(swapped) == 1  # the hidden-to-hidden linear; stem and head stay fp32
    assert (summary["fp32_test_accuracy"] is not None) == (quantizer == "ptq8")
    model, _ = build_from_checkpoint(out / "model.safetensors")
    layer = model.get_submodule(swapped[0])
    assert type(layer).__name__ == "QuantLinear" and layer.quantizer.name == quantizer
    splits = create("dataset", "digits")
    assert tawq_core.evaluate(model, splits.test, splits, timesteps=2) == pytest.approx(summary["test_accuracy"])


@pytest.mark.parametrize("args, message", [
    (("--model", "no-such-model"), "unknown model 'no-such-model'"),
    (("--model", "mlp", "--quantizer", "nope"), "unknown quantizer 'nope'"),
    (("--model", "mlp", "--backend", "npu"), "backend 'npu' is unavailable"),
    (("--model", "mlp", "--model-option", "width"), "--model-option expects KEY=VALUE"),
    (("--model", "mlp", "--timesteps", "0"), "timesteps must be an integer >= 1"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    full = [*FAST, *args, "--out", str(tmp_path / "o")]
    assert run(*full) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unwritable_output_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run("--model", "mlp", *FAST, "--out", str(blocker / "sub")) == 2
    assert "cannot create output folder" in capsys.readouterr().err


def test_distill_from_a_checkpoint_records_the_recipe_and_refuses_another_dataset(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert run("--model", "mlp", "--model-option", "hidden=[48]", *FAST, "--out", str(teacher)) == 0
    student = tmp_path / "student"
    assert run("--model", "mlp", "--model-option", "hidden=[48]", "--quantizer", "tawq", *FAST,
               "--distill-from", str(teacher), "--distill-weight", "0.6", "--out", str(student)) == 0
    recipe = json.loads((student / "summary.json").read_text())["train"]
    assert (recipe["distill"], recipe["distill_weight"], recipe["distill_temperature"]) == (True, 0.6, 2.0)
    capsys.readouterr()
    args = ("--model", "mlp", "--dataset", "mnist1d", "--epochs", "1", "--distill-from", str(teacher),
            "--out", str(tmp_path / "x"), "--no-progress")
    assert run(*args) == 2
    assert "teacher was trained on 'digits', not 'mnist1d'" in capsys.readouterr().err
