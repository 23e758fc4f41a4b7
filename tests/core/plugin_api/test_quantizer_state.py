"""Quantizer state has a home: layer buffers that calibration fits and that checkpoints and packed files
carry; the eval cache never serves weights from before a calibration, a state load or a ``.data`` edit."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import pytest
import torch
from stateful_quantizer import NAME

import tawq_core
from tawq_core import CheckpointError
from tawq_core.plugin_api.registry import Registry

OPTIONS = {"num_classes": 3, "sample_shape": (6,), "hidden": (16, 16), "bn": False}
T = 2


@pytest.fixture
def registered(monkeypatch):
    """The process registry plus the test quantizer, through an in-process entry point."""
    eps = [*entry_points(group="tawq"), EntryPoint(name="stateful", value="stateful_quantizer", group="tawq")]
    monkeypatch.setattr("tawq_core.plugin_api.registry._default", Registry(eps))


def _model():
    torch.manual_seed(0)
    model = tawq_core.create("model", "mlp", **OPTIONS)
    with torch.no_grad():
        model.body[2][0].weight.mul_(8)  # so the hidden layer spikes and the outputs see its weights
    tawq_core.quantize(model, NAME, T)
    return model.eval()


def _batches(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(T, 4, 6, generator=g) * 8 for _ in range(n)]


def _out(model, x):
    with torch.no_grad():
        return model(x)


def test_calibration_fits_layer_state_and_refreshes_the_eval_cache(registered):
    model = _model()
    layer = model.body[2][0]
    assert set(model.state_dict()) >= {"body.2.0.qstate_gain", "body.2.0.qstate_batches"}
    x = _batches(1, seed=9)[0]
    before = _out(model, x)  # caches the uncalibrated effective weights
    assert tawq_core.calibrate(model, _batches()) == 1
    assert layer.quantizer_state()["batches"] == 2 and layer.quantizer_state()["gain"] > 1
    after = _out(model, x)
    assert after.std(0).max() > 0 and not torch.equal(after, before)  # the outputs see the state
    layer._cache = None  # a cold cache must give the same numbers
    assert torch.equal(_out(model, x), after)
    layer.quantizer.calibrate(layer.quantizer_state(), layer.weight, 5 * x)  # state edited behind its back
    edited = _out(model, x)
    layer._cache = None
    assert not torch.equal(edited, after) and torch.equal(_out(model, x), edited)


def test_checkpoint_round_trip_restores_the_state(registered, tmp_path):
    model = _model()
    tawq_core.calibrate(model, _batches())
    x = _batches(1, seed=9)[0]
    meta = {"model": "mlp", "model_options": OPTIONS, "quantizer": NAME, "timesteps": T}
    tawq_core.save_checkpoint(tmp_path / "c.safetensors", model, meta)
    rebuilt, _ = tawq_core.build_from_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(rebuilt.body[2][0].qstate_gain, model.body[2][0].qstate_gain)
    assert torch.equal(_out(rebuilt.eval(), x), _out(model, x))
    del meta["timesteps"]
    tawq_core.save_checkpoint(tmp_path / "no-t.safetensors", model, meta)
    with pytest.raises(CheckpointError, match="records no timesteps"):
        tawq_core.build_from_checkpoint(tmp_path / "no-t.safetensors")


def test_packed_round_trip_restores_the_state(registered, tmp_path):
    model = _model()
    tawq_core.calibrate(model, _batches())
    x = _batches(1, seed=9)[0]
    tawq_core.export(model, "tawq", tmp_path / "m.tawq", model_name="mlp", model_options=OPTIONS)
    loaded = tawq_core.load_packed(tmp_path / "m.tawq", deploy=False)
    assert torch.equal(loaded.body[2][0].qstate_gain, model.body[2][0].qstate_gain)
    assert torch.equal(_out(loaded, x), _out(model, x))


def test_load_state_dict_refreshes_the_eval_cache(registered):
    model, other = _model(), _model()
    tawq_core.calibrate(other, _batches(seed=5))
    x = _batches(1, seed=9)[0]
    _out(model, x)  # cache
    model.load_state_dict(other.state_dict())
    assert torch.equal(_out(model, x), _out(other, x))


def test_data_edits_refresh_the_eval_cache():
    layer = tawq_core.QuantLinear.from_float(torch.nn.Linear(6, 4), "tawq", T).eval()
    with torch.no_grad():
        first = layer.effective_weight()
        layer.weight.data.mul_(-1)  # bumps no version counter
        assert torch.equal(layer.effective_weight(), -first)
        layer.weight.data[[0, 1]] = layer.weight.data[[1, 0]]  # a swap keeps every plain sum
        assert torch.equal(layer.effective_weight(), -first[:, [1, 0, 2, 3]])
