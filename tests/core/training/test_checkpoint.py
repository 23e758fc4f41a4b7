"""Checkpoints: safetensors round trip with metadata, atomic writes, and refusal of unsafe or foreign files."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import tawq_core
from tawq_core import CheckpointError, ConfigError
from tawq_core.training.checkpoint import (
    WEIGHTS_NAME,
    build_from_checkpoint,
    load_checkpoint,
    load_into,
    save_checkpoint,
    write_json,
)


class Toy(nn.Module):
    def __init__(self, num_classes: int = 3, sample_shape: tuple[int, ...] = (4,), width: int = 5) -> None:
        super().__init__()
        assert isinstance(sample_shape, tuple)
        self.fc = nn.Linear(sample_shape[0], width)
        self.bn = nn.BatchNorm1d(width)
        self.head = nn.Linear(width, num_classes)
        self.head.weight = nn.Parameter(torch.randn(num_classes, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        return self.head(self.bn(self.fc(x).flatten(0, 1)).view(t, b, -1)).mean(0)


META = {"model": "toy", "model_options": {"num_classes": 3, "sample_shape": [4], "width": 5}}


def trained_toy() -> Toy:
    torch.manual_seed(0)
    model = Toy()
    model(torch.randn(2, 8, 4))  # moves BatchNorm running stats away from their defaults
    return model


def test_round_trip_keeps_weights_buffers_and_metadata(tmp_path):
    model = trained_toy()
    path = save_checkpoint(tmp_path / "run", model, {**META, "timesteps": 2})  # a new folder: file inside it
    assert path == tmp_path / "run" / WEIGHTS_NAME
    state, meta = load_checkpoint(path)
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert meta["model"] == "toy" and meta["timesteps"] == 2
    assert meta["tawq_version"] == tawq_core.__version__ and meta["format"] == 1
    other = Toy()
    load_into(other, state, meta)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in model.state_dict().items())
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_folder_resolves_to_the_weights_file_inside(tmp_path):
    save_checkpoint(tmp_path / WEIGHTS_NAME, trained_toy(), META)
    state, meta = load_checkpoint(tmp_path)
    assert meta["model"] == "toy" and state


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", trained_toy(), META)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="JSON-serializable"):
        save_checkpoint(path, Toy(), {"model": object()})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickles_are_refused_and_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"weight": torch.zeros(2), "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects.*unsafe"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_plain_torch_state_dicts_load_weights_only(tmp_path):
    model = trained_toy()
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "other-tool.pth")
    state, meta = load_checkpoint(tmp_path / "other-tool.pth")
    assert meta == {} and set(state) == set(model.state_dict())


def test_corrupt_truncated_and_missing_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", trained_toy(), META).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[:-16])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x07 not a checkpoint at all" * 4)
    with pytest.raises(CheckpointError, match="neither a safetensors file nor a torch state dict"):
        load_checkpoint(tmp_path / "junk.bin")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    state, meta = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", trained_toy(), META))
    with pytest.raises(CheckpointError, match=r"shape mismatch: bn.bias: checkpoint \(5,\) vs model \(7,\).*"
                                              r"saved from model 'toy'"):
        load_into(Toy(width=7), state, meta)
    with pytest.raises(CheckpointError, match="missing: .*unexpected: .*rebuild the same model"):
        load_into(nn.Sequential(nn.Linear(4, 5)), state, meta)


def test_build_from_checkpoint_recreates_the_recorded_model(tmp_path, monkeypatch):
    real_create = tawq_core.create

    def create(kind, name, **options):
        return Toy(**options) if (kind, name) == ("model", "toy") else real_create(kind, name, **options)

    monkeypatch.setattr(tawq_core, "create", create)
    model = trained_toy()
    path = save_checkpoint(tmp_path / "m.safetensors", model, META)
    rebuilt, meta = build_from_checkpoint(path)
    assert isinstance(rebuilt, Toy) and meta["model_options"]["width"] == 5
    x = torch.randn(2, 3, 4)
    model.eval(), rebuilt.eval()
    assert torch.equal(model(x), rebuilt(x))


def test_build_needs_a_recorded_model_name(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", trained_toy(), {})
    with pytest.raises(CheckpointError, match="records no model name"):
        build_from_checkpoint(path)


def test_write_json_is_atomic_and_reports_unwritable_places(tmp_path):
    out = write_json(tmp_path / "a" / "summary.json", {"accuracy": 0.5})
    assert out.read_text().strip().startswith("{") and os.listdir(tmp_path / "a") == ["summary.json"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        write_json(blocker / "summary.json", {})


def test_build_reapplies_the_recorded_quantizer_and_policy(tmp_path):
    options = {"num_classes": 3, "sample_shape": (4,), "hidden": [8, 8]}
    model = tawq_core.create("model", "mlp", **options)
    policy = {"skip_roles": ["head"]}  # quantize the stem too
    report = tawq_core.quantize(model, tawq_core.create("quantizer", "binary"), 2, tawq_core.QuantPolicy(**policy))
    meta = {"model": "mlp", "model_options": options, "quantizer": "binary", "timesteps": 2, "quant_policy": policy}
    rebuilt, _ = build_from_checkpoint(save_checkpoint(tmp_path / "q.safetensors", model, meta))
    swapped = [name for name, _ in tawq_core.quantized_layers(rebuilt)]
    assert swapped == [layer.name for layer in report.swapped] and len(swapped) == 2
    x = torch.rand(2, 5, 4)
    model.eval(), rebuilt.eval()
    assert torch.equal(model(x), rebuilt(x))
