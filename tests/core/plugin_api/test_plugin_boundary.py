"""The plugin boundary: plugin code that exits, prints, parses arguments, clashes or fails at run time is
named in one line (plugin, kind, distribution) and never ends, corrupts or hijacks tawq.

The plugins are the fixture distributions, installed for real: tawq-broken (tests/fixtures), tawq-clash
and the shipped template examples/tawq-example. CLI calls run side by side to keep the module fast."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import EntryPoint

import pytest
import torch
from cli_helpers import assert_one_line_error

from tawq_core.plugin_api.plugin_boundary import PluginFailed, plugin_failure
from tawq_core.plugin_api.registry import Registry

TRAIN = ("train", "--model", "mlp", "--model-option", "hidden=[16,12]", "--model-option", "bn=false",
         "--dataset", "example-pulses", "--epochs", "1", "--no-progress")
TINY_BENCH = """
name = "boundary"
dataset = "example-pulses"
model = "mlp"
timesteps = 4
quantizers = ["fp32", "broken-raises", "broken-exits"]
backends = ["cpu"]
seeds = [0]
threads = 1
[model_options]
hidden = [16, 12]
bn = false
[train]
epochs = 1
[measure]
batch_size = 16
warmup = 1
repeats = 2
energy_seconds = 0.01
ops_batches = 1
calibration_batches = 1
"""


@pytest.fixture(scope="module")
def runs(tawq_cli, broken_plugin_path, example_plugin_path, clash_plugin_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("boundary")
    preset = root / "boundary.toml"
    preset.write_text(TINY_BENCH)
    both = [broken_plugin_path, example_plugin_path]
    calls = {
        "listing": (("plugins", "--json"), both, {"TAWQ_DISABLE_PLUGINS": "tawq-exampel"}),
        "clash": (("plugins", "--json"), [example_plugin_path, clash_plugin_path], {}),
        "clash-reversed": (("plugins", "--json"), [clash_plugin_path, example_plugin_path], {}),
        "raises": ((*TRAIN, "--quantizer", "broken-raises", "--out", str(root / "raises")), both, {}),
        "opaque": ((*TRAIN, "--neuron", "broken-opaque", "--timesteps", "4", "--out", str(root / "opaque")), both, {}),
        "bench": (("bench", "--preset", str(preset), "--out", str(root / "bench"), "--quiet"), both, {}),
        "check": (("plugins", "--check", "broken-unpack", "example-if"), both, {}),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(tawq_cli, *args, extra_path=path, env=env)
                   for name, (args, path, env) in calls.items()}
        results = {name: future.result() for name, future in futures.items()}
    results["export-opaque"] = tawq_cli("export", str(root / "opaque"), "--format", "nir", "--out",
                                        str(root / "opaque.nir"), extra_path=both)
    results["root"] = root
    return results


@pytest.mark.slow
def test_plugins_that_exit_print_or_parse_arguments_at_import(runs):
    listing = runs["listing"]
    data = json.loads(listing.stdout)  # valid JSON: the chatty plugin's prints were kept off stdout
    failures = {f["entry_point"]: f["error"] for f in data["failures"]}
    assert failures["exits-at-import"] == "SystemExit: called sys.exit(3)"
    assert failures["argparse-at-import"].startswith("SystemExit: called sys.exit(2) (its ")
    assert "usage" not in listing.stdout + listing.stderr and "someone-elses-tool" not in listing.stderr
    assert any("hello from a chatty plugin" in line for line in data["load_output"])
    assert "broken-printer" in {row["name"] for row in data["plugins"]}  # it printed, and it works


@pytest.mark.slow
def test_a_name_two_third_party_plugins_register_is_refused_for_both_in_any_order(runs):
    outcomes = []
    for name in ("clash", "clash-reversed"):
        data = json.loads(runs[name].stdout)
        assert "example-pow2" not in {row["name"] for row in data["plugins"]}
        assert "example-if" in {row["name"] for row in data["plugins"]}  # the rest of tawq-example loads
        outcomes.append(sorted((f["distribution"], f["entry_point"], f["error"]) for f in data["failures"]))
    assert outcomes[0] == outcomes[1]
    (dist_a, ep_a, error), (dist_b, ep_b, _) = outcomes[0]
    assert (dist_a, ep_a, dist_b, ep_b) == ("tawq-clash", "pow2-again", "tawq-example", "example")
    assert "entry point 'example' of tawq-example and entry point 'pow2-again' of tawq-clash" in error
    assert "both registrations were refused" in error


@pytest.mark.slow
def test_unknown_names_in_the_selection_variables_are_reported(runs, monkeypatch):
    unknown = json.loads(runs["listing"].stdout)["unknown_selection"]
    assert unknown == ["TAWQ_DISABLE_PLUGINS names 'tawq-exampel', but no installed distribution provides tawq "
                       "plugins under that name (installed: tawq, tawq-broken, tawq-example)"]
    monkeypatch.setenv("TAWQ_PLUGINS", "Tawq_Example,nope")  # spelled as pip would accept it, and a typo
    registry = Registry([]).load()
    assert [line.split(",")[0] for line in registry.unknown_selection] == [
        "TAWQ_PLUGINS names 'nope'", "TAWQ_PLUGINS names 'tawq-example'"]


@pytest.mark.slow
def test_a_plugin_raising_during_train_is_one_line_naming_it(runs):
    assert_one_line_error(runs["raises"], "quantizer 'broken-raises' from distribution tawq-broken 6.6.6 failed: "
                          "ValueError: weights exploded (in tawq_broken.runtime.weights", "--debug", ignore_case=False)
    assert not (runs["root"] / "raises" / "model.safetensors").exists()


def test_debug_keeps_the_traceback_of_a_plugin_failure(tmp_path):
    from tawq_core.cli import _plugin_failure_or_raise

    with pytest.raises(SystemExit):  # not a plugin's: re-raised as it was, whatever --debug says
        _plugin_failure_or_raise(SystemExit(5), debug=False)
    failure = PluginFailed("quantizer 'x' from distribution d 1 failed: ValueError: v")
    with pytest.raises(PluginFailed):
        _plugin_failure_or_raise(failure, debug=True)


def test_a_quantizer_returning_the_wrong_shape_is_named_before_torch_fails():
    from tawq_core import QuantLinear
    from tawq_plugins.quantizers.fp32 import Fp32

    class WrongShape(Fp32):
        def weights(self, w, timesteps):
            return w[:1]

    layer = QuantLinear(16, 12, quantizer=WrongShape(), timesteps=2)
    with pytest.raises(PluginFailed, match=r"^quantizer WrongShape \(module .*\) broke its contract: weights\(\) "
                                           r"returned \(1, 16\) for a weight of shape \(12, 16\) at T=2"):
        layer(torch.ones(2, 3, 16))


@pytest.mark.slow
def test_exporting_a_neuron_without_a_dynamics_description_names_it(runs):
    assert runs["opaque"].returncode == 0, runs["opaque"].stderr  # trains fine at --timesteps 4
    assert_one_line_error(runs["export-opaque"], "neuron 'broken-opaque' from distribution tawq-broken 6.6.6 cannot "
                          "be expressed for NIR export", ignore_case=False)


@pytest.mark.slow
def test_bench_records_the_failed_cell_and_finishes_the_run(runs):
    result = runs["bench"]
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    (results,) = (runs["root"] / "bench").rglob("results.json")
    records = {r["quantizer"]: r for r in json.loads(results.read_text())["records"]}
    assert records["fp32"]["status"] == "ok"
    assert records["broken-raises"]["status"] == records["broken-exits"]["status"] == "failed"
    assert "quantizer 'broken-raises' from distribution tawq-broken 6.6.6 failed" in records["broken-raises"]["reason"]
    assert "SystemExit: called sys.exit(4)" in records["broken-exits"]["reason"]  # sys.exit() did not end the run


@pytest.mark.slow
def test_plugins_check_prints_a_pass_fail_table(runs):
    result = runs["check"]
    assert result.returncode == 1
    rows = {line.split()[1]: line for line in result.stdout.splitlines()[1:]}
    assert " FAIL " in rows["broken-unpack"] and "differs from weights(w)" in rows["broken-unpack"]
    assert " PASS " in rows["example-if"]


def test_blame_names_the_third_party_plugin_whose_code_raised(tmp_path, monkeypatch):
    (tmp_path / "inproc_blamed.py").write_text(
        "from tawq_core import hookimpl\n"
        "class Boom:\n    def __init__(self):\n        pass\n"
        "    def go(self):\n        raise KeyError('deep inside')\n"
        "@hookimpl\ndef tawq_register_quantizers(register):\n    register('boom', Boom)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry([EntryPoint(name="blamed", value="inproc_blamed", group="tawq")]).load()
    with pytest.raises(KeyError) as info:
        registry.create("quantizer", "boom").go()
    failure = plugin_failure(info.value, registry)
    assert isinstance(failure, PluginFailed) and failure.entry.name == "boom"
    assert str(failure).startswith("quantizer 'boom' from distribution <unknown> ? failed: KeyError: 'deep inside'")
    try:
        raise RuntimeError("tawq's own bug")
    except RuntimeError as exc:
        assert plugin_failure(exc, registry) is None
    assert plugin_failure(KeyboardInterrupt(), registry) is None


def test_packed_export_refuses_a_quantizer_whose_unpack_drifts(tmp_path):
    """Outputs alone would pass: a 0.1 % weight drift rarely flips a spike. The weights are compared."""
    import tawq_core
    from tawq_core.export import ExportError
    from tawq_plugins.quantizers.ternary import Ternary

    class Drifts(Ternary):
        def unpack(self, packed):
            return super().unpack(packed) * 1.001

    model = tawq_core.create("model", "mlp", num_classes=3, sample_shape=(6,), hidden=(8, 8))
    tawq_core.quantize(model, Drifts(), 2)
    with pytest.raises(ExportError, match=r"^quantizer Drifts \(module .*\): unpack\(pack\(w\)\) differs from the "
                                          r"weights layer 'body\.2\.0' computes with \(max abs difference "):
        tawq_core.export(model, "tawq", tmp_path / "m.tawq")
    assert not (tmp_path / "m.tawq").exists()
