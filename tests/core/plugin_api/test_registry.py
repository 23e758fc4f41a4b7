"""The registry: built-ins through entry points, look-ups, errors, and isolation of broken plugins."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest
import torch

import tawq_core
from tawq_core import PluginNotFound, TawqError
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.registry import Registry


def test_builtins_are_registered_through_entry_points():
    registry = tawq_core.get_registry()
    for kind, name in [("quantizer", "fp32"), ("neuron", "lif"), ("backend", "cpu")]:
        entry = registry.entry(kind, name)
        assert entry.distribution == "tawq"
        assert entry.version == tawq_core.__version__
        assert entry.module.startswith(("tawq_plugins.", "tawq_backends."))


def test_create_returns_working_instances():
    quantizer = tawq_core.create("quantizer", "fp32")
    w = torch.randn(3, 4)
    assert torch.equal(quantizer.weights(w, 4), w)
    neuron = tawq_core.create("neuron", "lif", tau=2.0)
    spikes = neuron(torch.full((4, 2, 3), 3.0))
    assert spikes.shape == (4, 2, 3) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    backend = tawq_core.create("backend", "cpu")
    assert backend.is_available() == (True, "")


def test_unknown_name_lists_known_names():
    with pytest.raises(PluginNotFound) as info:
        tawq_core.create("quantizer", "nope")
    assert isinstance(info.value, TawqError)
    message = str(info.value)
    assert "nope" in message and "fp32" in message and "\n" not in message


def test_unknown_kind_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="kinds: quantizer"):
        tawq_core.list_plugins("quantiser")
    with pytest.raises(ConfigError, match="invalid options for neuron 'lif'"):
        tawq_core.create("neuron", "lif", no_such_option=1)


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="tawq")


def test_registry_isolates_failures_without_installed_distributions(tmp_path, monkeypatch):
    """Entry points built in-process (no dist metadata) still load, and failures are collected."""
    pkg = tmp_path / "inproc_plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(
        "from tawq_core import hookimpl\n"
        "from tawq_plugins.quantizers.fp32 import Fp32\n"
        "@hookimpl\ndef tawq_register_quantizers(register):\n"
        "    register('inproc-a', Fp32)\n    register('inproc-b', Fp32)\n"
    )
    (pkg / "bad_name.py").write_text(
        "from tawq_core import hookimpl\n"
        "@hookimpl\ndef tawq_register_models(register):\n    register('Bad Name', object)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry([_ep("good", "inproc_plugins.good"), _ep("bad", "inproc_plugins.bad_name"),
                         _ep("missing", "inproc_plugins.does_not_exist")]).load()
    assert registry.names("quantizer") == ["inproc-a", "inproc-b"]
    errors = " | ".join(f.error for f in registry.failures)
    assert "invalid model name 'Bad Name'" in errors
    assert "ModuleNotFoundError" in errors
    assert len(registry.failures) == 2


@pytest.mark.slow
def test_example_plugin_installed_for_real(example_plugin_path, tawq_cli):
    result = tawq_cli("plugins", "--json", extra_path=[example_plugin_path])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {(r["kind"], r["name"]): r for r in data["plugins"]}
    assert rows[("quantizer", "example-pow2")]["distribution"] == "tawq-example"
    assert rows[("quantizer", "example-pow2")]["version"] == "0.3.1"
    assert rows[("neuron", "example-if")]["distribution"] == "tawq-example"
    assert rows[("quantizer", "fp32")]["distribution"] == "tawq"
    assert data["failures"] == []


@pytest.mark.slow
def test_example_plugin_create_works(example_plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(example_plugin_path))
    registry = Registry().load()
    quantizer = registry.create("quantizer", "example-pow2")
    w = torch.tensor([[0.3, -0.9, 2.5]])
    q = quantizer.weights(w, 4)
    assert torch.equal(q, torch.tensor([[0.3125, -1.25, 2.5]]))  # 2.5 * 2**-3, -2.5 * 2**-1, the peak
    assert torch.equal(quantizer.unpack(quantizer.pack(w, 4)), q)
    neuron = registry.create("neuron", "example-if", v_threshold=1.0)
    assert neuron(torch.full((4, 1), 0.5)).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.slow
def test_broken_plugins_are_reported_and_others_keep_working(broken_plugin_path, example_plugin_path,
                                                             tawq_cli):
    result = tawq_cli("plugins", "--json", extra_path=[broken_plugin_path, example_plugin_path])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    failures = {f["entry_point"]: f for f in data["failures"]}
    assert set(failures) == {"import-error", "hook-raises", "duplicate", "misspelled", "exits-at-import",
                             "argparse-at-import"}
    assert all(f["distribution"] == "tawq-broken" and f["version"] == "6.6.6" for f in failures.values())
    assert "tawq_nonexistent_dependency" in failures["import-error"]["error"]
    assert "boom while registering" in failures["hook-raises"]["error"]
    assert "already registered by tawq" in failures["duplicate"]["error"]
    assert "tawq_register_quantiser" in failures["misspelled"]["error"]
    rows = {(r["kind"], r["name"]): r for r in data["plugins"]}
    assert rows[("quantizer", "fp32")]["distribution"] == "tawq"  # the built-in was not shadowed
    assert ("quantizer", "broken-dist-ok") in rows  # a good module of the broken distribution loads
    assert ("quantizer", "example-pow2") in rows  # and other distributions are untouched
    # the human-readable listing names the culprit on stderr and still lists everything
    text = tawq_cli("plugins", extra_path=[broken_plugin_path])
    assert text.returncode == 0
    assert "FAILED import-error (tawq-broken 6.6.6)" in text.stderr
    assert "fp32" in text.stdout


@pytest.mark.slow
def test_plugin_selection_environment_variables(broken_plugin_path, example_plugin_path, tawq_cli):
    paths = [broken_plugin_path, example_plugin_path]
    disabled = json.loads(tawq_cli("plugins", "--json", extra_path=paths,
                                   env={"TAWQ_DISABLE_PLUGINS": "tawq-broken"}).stdout)
    assert disabled["failures"] == []
    names = {r["name"] for r in disabled["plugins"]}
    assert "example-pow2" in names and "broken-dist-ok" not in names
    only = json.loads(tawq_cli("plugins", "--json", extra_path=paths,
                               env={"TAWQ_PLUGINS": "tawq-example"}).stdout)
    names = {r["name"] for r in only["plugins"]}
    assert "example-pow2" in names and "fp32" in names  # built-ins always load
    assert "broken-dist-ok" not in names and only["failures"] == []
