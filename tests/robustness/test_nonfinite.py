"""#19 class 3: NaN/inf is caught where it enters (dataset batches, weights after optimizer steps, checkpoints,
exports), in one line naming where, and no verification passes NaN (it never compares equal)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cli_helpers import cli_in_process

from tawq_core import CheckpointError, ConfigError, TrainingDiverged, create, quantize, save_checkpoint
from tawq_core.export import ExportError, export
from tawq_core.export.onnx_export import export_onnx
from tawq_core.finite import max_abs_difference
from tawq_core.training.loop import TrainConfig, seed_everything, train

MLP_OPTIONS = {"num_classes": 10, "sample_shape": (1, 8, 8), "hidden": [16, 16]}
TINY = TrainConfig(epochs=1, batch_size=64, lr=0.01, warmup_epochs=0.0, timesteps=2)


def _base(dataset):
    while hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


def test_one_nan_pixel_in_one_training_sample_names_the_sample():
    """The issue's example: before, the weights silently became NaN and train() returned 10 % accuracy."""
    splits = create("dataset", "digits")
    _base(splits.train).x[100].view(-1)[3] = float("nan")
    seed_everything(0)
    model = create("model", "mlp", **MLP_OPTIONS)
    with pytest.raises(ConfigError, match=r"dataset 'digits': training sample 100 holds NaN/inf \(1 NaN, 0 inf"):
        train(model, splits, TINY)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # refused before it could train on it


def test_the_sample_is_named_in_the_base_dataset_under_a_validation_split():
    splits = create("dataset", "digits")
    _base(splits.train).x[7].view(-1)[0] = float("inf")
    with pytest.raises(ConfigError, match=r"training sample 7 \(of ArrayDataset\) holds NaN/inf \(0 NaN, 1 inf"):
        train(create("model", "mlp", **MLP_OPTIONS), splits, TrainConfig(**{**TINY.to_dict(), "val_fraction": 0.2}))


def test_weights_that_become_inf_stop_training_naming_the_weight():
    splits = create("dataset", "digits")
    seed_everything(0)
    config = TrainConfig(epochs=1, batch_size=16, lr=1e30, warmup_epochs=0.0, timesteps=2)
    with pytest.raises(TrainingDiverged, match=r"training diverged: (weight '[\w.]+' \(.*\) became non-finite after "
                                               r"step \d+ of epoch 1/1|loss is nan).*lower the learning rate"):
        train(create("model", "mlp", **MLP_OPTIONS), splits, config)


def test_nan_latent_weight_is_refused_at_export_not_packed_as_zero_bits(tmp_path):
    """The issue's example: one NaN latent weight zeroed a tawq layer and export reported 0.0 bits/weight."""
    model = create("model", "mlp", **MLP_OPTIONS)
    quantize(model, create("quantizer", "tawq"), 2)
    with torch.no_grad():
        model.body[2][0].weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match=r"cannot export: tensor 'body.2.0.weight' \(1 NaN, 0 inf of 256 values\)"):
        export(model.eval(), "tawq", tmp_path / "m.tawq", timesteps=2)
    assert not (tmp_path / "m.tawq").exists()


def test_onnx_verification_never_passes_nan_outputs(tmp_path):
    """The issue's example: NaN head weights gave 'onnxruntime matches torch (max abs difference 0)'.
    `export_onnx` is called directly, past `export`'s weight check, to test the verification itself."""
    model = create("model", "mlp", **MLP_OPTIONS).eval()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(ExportError, match="the model and onnxruntime output NaN/inf, so the outputs cannot be"):
        export_onnx(model, tmp_path / "m.onnx", torch.rand(2, 2, 1, 8, 8))
    assert not (tmp_path / "m.onnx").exists()


def test_nan_compares_as_infinitely_far():
    nan = np.array([float("nan")])
    assert math.isinf(max_abs_difference(nan, nan))
    assert math.isinf(max_abs_difference(torch.tensor([1.0]), torch.tensor([float("inf")])))
    assert max_abs_difference(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) == 0.5


def test_checkpoint_with_a_nan_weight_is_one_line_at_the_cli(tmp_path):
    model = create("model", "mlp", **MLP_OPTIONS)
    with torch.no_grad():
        model.head.bias[3] = float("nan")
    path = save_checkpoint(tmp_path / "nan.safetensors", model,
                           {"model": "mlp", "model_options": {**MLP_OPTIONS, "sample_shape": [1, 8, 8]}})
    result = cli_in_process("export", path, "--format", "onnx", "--out", tmp_path / "m.onnx")
    result.one_line_error(f"checkpoint {path}: tensor 'head.bias' (1 NaN, 0 inf of 10 values) is not finite")
    with pytest.raises(CheckpointError, match="head.bias"):
        from tawq_core.training.checkpoint import load_checkpoint

        load_checkpoint(path)


def test_a_nan_test_sample_is_named_not_scored():
    from tawq_core.training.loop import evaluate

    splits = create("dataset", "digits")
    _base(splits.test).x[5].view(-1)[0] = float("nan")
    with pytest.raises(ConfigError, match=r"dataset 'digits': evaluation sample 5 holds NaN/inf .* does not score"):
        evaluate(create("model", "mlp", **MLP_OPTIONS), splits.test, splits, 2)
