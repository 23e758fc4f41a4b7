"""Bench configuration: presets parse and validate, bad input is one ConfigError, the hash is stable."""

from __future__ import annotations

import pytest

from tawq_core.bench.config import BenchConfig, from_mapping, load_preset, preset_names
from tawq_core.plugin_api.errors import ConfigError

BASE = {"dataset": "digits", "model": "mlp", "timesteps": 4, "quantizers": ["tawq"]}


def make(**changes) -> BenchConfig:
    return from_mapping({**BASE, **changes})


def test_fp32_is_always_first_and_not_duplicated():
    assert make(quantizers=["tawq", "fp32", "ptq8"]).quantizers == ("fp32", "tawq", "ptq8")
    assert make(quantizers="ptq8,binary").quantizers == ("fp32", "ptq8", "binary")


@pytest.mark.parametrize("changes, fragment", [
    ({"timesteps": 0}, "timesteps must be an integer >= 1"),
    ({"timesteps": "4"}, "timesteps must be an integer"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"seeds": "0,a"}, "seeds must be integers"),
    ({"seeds": [1, 1]}, "seeds lists a seed twice"),
    ({"quantizers": ["tawq", "tawq"]}, "lists a name twice"),
    ({"backends": []}, "backends must be a non-empty list"),
    ({"qat_init": "imagenet"}, "qat_init must be one of fp32, scratch"),
    ({"train": {"epochs": 0}}, "epochs must be an integer >= 1"),
    ({"train": {"lr": -1}}, "lr must be a number > 0"),
    ({"train": {"optimiser": "sgd"}}, "unknown training option(s) optimiser"),
    ({"train": {"seed": 3}}, "train.seed is set by the bench itself"),
    ({"qat": {"timesteps": 2}}, "qat.timesteps is set by the bench itself"),
    ({"measure": {"repeats": 0}}, "measure.repeats must be an integer >= 1"),
    ({"measure": {"repeat": 5}}, "measure: unknown key 'repeat'"),
    ({"quantizer_options": {"binary": {}}}, "names a quantizer that is not benchmarked"),
    ({"epochs": 3}, "unknown key 'epochs'"),
    ({"model_options": [1]}, "model_options must be a table"),
    ({"threads": 0}, "threads must be an integer >= 1"),
    ({"measure": {"energy_model": "7nm-dreams"}}, "unknown energy model '7nm-dreams'"),
    ({"policy": {"skip": ["stem"]}}, "policy: "),
])
def test_invalid_values_are_one_line_config_errors(changes, fragment):
    with pytest.raises(ConfigError) as info:
        make(**changes)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing 1 required"):
        from_mapping({k: v for k, v in BASE.items() if k != "model"})


def test_hash_is_stable_and_ignores_where_data_lives():
    a, b = make(), make(quantizers=["tawq"], data_dir="/elsewhere", name="other", description="x")
    assert a.config_hash == b.config_hash
    # pinned: a change here means every user's cache is invalidated; bump CACHE_FORMAT deliberately instead
    assert len(a.config_hash) == 64 and a.run_id == f"custom-{a.config_hash[:12]}"


@pytest.mark.parametrize("changes", [
    {"timesteps": 2}, {"seeds": [0, 1]}, {"quantizers": ["binary"]}, {"backends": ["cpu", "cuda"]},
    {"train": {"epochs": 2}}, {"qat_init": "scratch"}, {"measure": {"repeats": 7}},
    {"model_options": {"hidden": 8}}, {"quantizer_options": {"tawq": {"x": 1}}}, {"threads": 1},
    {"policy": {"exclude": ["body.*"]}}, {"measure": {"energy_model": "45nm-fp32", "ops_batches": 3}},
])
def test_hash_changes_with_anything_that_changes_a_cell(changes):
    assert make(**changes).config_hash != make().config_hash


def test_default_train_values_are_resolved_into_the_hash():
    # writing the default explicitly must not create a different run
    from tawq_core.training.loop import TrainConfig

    assert make(train={"lr": TrainConfig().lr}).config_hash == make().config_hash


def test_overrides_from_flags():
    cfg = make().with_overrides(epochs=3, batch_size=16, seeds="1,2", quantizers=["binary"], model=None)
    assert cfg.train == {"epochs": 3, "batch_size": 16} and cfg.qat == {"epochs": 3}
    assert cfg.seeds == (1, 2) and cfg.quantizers == ("fp32", "binary") and cfg.model == "mlp"
    with pytest.raises(ConfigError, match="timesteps"):
        make().with_overrides(timesteps=-1)
    # --quantizers drops the preset's options of quantizers it leaves out
    tuned = make(quantizers=["tawq", "binary"], quantizer_options={"tawq": {"x": 1}, "binary": {"y": 2}})
    assert tuned.with_overrides(quantizers=["binary"]).quantizer_options == {"binary": {"y": 2}}


def test_every_shipped_preset_validates():
    names = preset_names()
    for required in ("default", "digits-mlp", "cifar10-dvs-spikingformer", "shd-mlp",
                     "cifar100-spikingformer-4-384", "imagenet-spikingformer-8-384", "imagenet-qkformer-10-384"):
        assert required in names
    for name in names:
        cfg = load_preset(name)
        assert cfg.name == name and cfg.quantizers[0] == "fp32"


def test_preset_files(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('dataset = "digits"\nmodel = "mlp"\ntimesteps = 2\nquantizers = ["tawq"]\n'
                    '[train]\nepochs = 1\n')
    cfg = load_preset(str(good))
    assert cfg.name == "mine" and cfg.train == {"epochs": 1}
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = [\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_preset(str(bad))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 1\n" + good.read_text())
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_preset(str(unknown))
    with pytest.raises(ConfigError, match="does not exist"):
        load_preset(str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="unknown preset 'nope'; shipped presets: .*default"):
        load_preset("nope")
