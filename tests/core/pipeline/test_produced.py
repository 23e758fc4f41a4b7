"""The pipeline's stages on a tiny digits MLP: typed recipes, one flow for fp32, QAT (scratch, fine-tuned,
distilled) and PTQ, and the refusals that keep a recipe honest."""

from __future__ import annotations

import pytest
import torch

from tawq_core.nn.quantization import QuantPolicy, quantized_layers
from tawq_core.pipeline import (
    Calibration,
    Data,
    ModelSpec,
    QatInit,
    QuantSpec,
    Recipe,
    Runtime,
    build_model,
    evaluate_model,
    produce,
)
from tawq_core.pipeline import produced as pipeline
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.quantizer import QuantMode
from tawq_core.plugin_api.registry import create
from tawq_core.training.loop import TrainConfig


@pytest.fixture(scope="module")
def data() -> Data:
    return Data(create("dataset", "digits"), timesteps=2)


@pytest.fixture
def spec(data) -> ModelSpec:
    return ModelSpec("mlp", data.splits.model_options({"hidden": [16, 16]}, "model_options"))


CONFIG = TrainConfig(epochs=1, batch_size=64, timesteps=2, eval_every=0)
RUNTIME = Runtime(torch.device("cpu"), progress=False)


def test_build_is_seeded(spec):
    a, b = build_model(spec, 3), build_model(spec, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_modes_come_from_the_quantizer_and_a_mixed_policy(spec):
    assert Recipe(spec, CONFIG).mode is QuantMode.NONE
    assert QuantSpec(create("quantizer", "ptq8")).mode is QuantMode.PTQ
    mixed = QuantSpec(create("quantizer", "ptq8"), QuantPolicy(layer_quantizers={"*": "tawq"}))
    assert mixed.mode is QuantMode.QAT  # any QAT quantizer makes the whole model trained
    unquantized = QuantSpec(create("quantizer", "fp32"))  # a quantizer whose own mode is NONE
    assert Recipe(spec, CONFIG, unquantized).mode is QuantMode.NONE  # trained like the reference (tawq train)
    assert Recipe(spec, CONFIG, unquantized, calibration=Calibration(64)).mode is QuantMode.PTQ  # bench rows


def test_fp32_then_ptq_copy_and_distilled_fine_tune(spec, data, monkeypatch):
    fp32 = produce(Recipe(spec, CONFIG), data, RUNTIME)
    assert fp32.report is None and fp32.result is not None and not list(quantized_layers(fp32.model))
    before = {k: v.clone() for k, v in fp32.model.state_dict().items()}

    ptq = produce(Recipe(spec, CONFIG, QuantSpec(create("quantizer", "ptq8")), calibration=Calibration(64, 2)),
                  data, RUNTIME, reference=lambda: fp32.model)
    assert ptq.result is None and ptq.report is not None and list(quantized_layers(ptq.model))
    assert all(torch.equal(before[k], v) for k, v in fp32.model.state_dict().items())  # the reference was copied
    assert 0.0 <= evaluate_model(ptq.model, data, "cpu", 256) <= 1.0

    teachers = []
    real_train = pipeline.train
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: teachers.append(k["teacher"]) or real_train(*a, **k))
    kd = TrainConfig(epochs=1, batch_size=64, timesteps=2, eval_every=0, distill=True)
    tuned = produce(Recipe(spec, kd, QuantSpec(create("quantizer", "tawq")), QatInit.FP32), data, RUNTIME,
                    reference=lambda: fp32.model)
    assert teachers == [fp32.model] and tuned.result is not None  # distilled from the reference itself
    assert list(quantized_layers(tuned.model)) and not list(quantized_layers(fp32.model))


def test_recipes_that_cannot_run_are_refused(spec, data):
    with pytest.raises(ConfigError, match="needs a Calibration"):
        Recipe(spec, CONFIG, QuantSpec(create("quantizer", "ptq8")))
    fine_tune = Recipe(spec, CONFIG, QuantSpec(create("quantizer", "tawq")), QatInit.FP32)
    with pytest.raises(ConfigError, match="needs the trained fp32 reference"):
        produce(fine_tune, data, RUNTIME)
