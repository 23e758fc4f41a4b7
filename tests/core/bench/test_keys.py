"""Cache keys re-do only what a change affects: configuration, plugin code and versions, hardware."""

from __future__ import annotations

from pathlib import Path

import pytest

from tawq_core.bench import fingerprint, keys
from tawq_core.bench.config import from_mapping

BASE = {"dataset": "digits", "model": "mlp", "timesteps": 4, "quantizers": ["tawq", "ptq8"]}
CPU = {"backend": "cpu", "device": "a CPU model", "logical_cpus": "2"}


def test_fp32_model_survives_changes_that_do_not_touch_it():
    a = from_mapping(BASE)
    for changed in (from_mapping({**BASE, "quantizers": ["binary"]}),
                    from_mapping({**BASE, "qat": {"epochs": 3}}),
                    from_mapping({**BASE, "backends": ["cpu", "cuda"]}),
                    from_mapping({**BASE, "threads": 1, "measure": {"repeats": 5}})):
        assert keys.model_key(changed, 0, "fp32", "none") == keys.model_key(a, 0, "fp32", "none")
    assert keys.model_key(from_mapping({**BASE, "train": {"epochs": 3}}), 0, "fp32", "none") != \
        keys.model_key(a, 0, "fp32", "none")
    assert keys.model_key(a, 1, "fp32", "none") != keys.model_key(a, 0, "fp32", "none")


def test_qat_init_decides_whether_the_fp32_recipe_matters():
    fine_tune = from_mapping(BASE)
    scratch = from_mapping({**BASE, "qat_init": "scratch"})
    longer_fp32 = {"train": {"epochs": 30}, "qat": {"epochs": 10}}
    assert keys.model_key(fine_tune, 0, "tawq", "qat") != \
        keys.model_key(from_mapping({**BASE, **longer_fp32}), 0, "tawq", "qat")
    # from scratch, the fp32 model is not the starting point (only the QAT recipe counts)
    assert keys.model_key(from_mapping({**BASE, "qat_init": "scratch", "qat": {"epochs": 10}}), 0, "tawq", "qat") == \
        keys.model_key(from_mapping({**BASE, "qat_init": "scratch", **longer_fp32}), 0, "tawq", "qat")
    assert keys.model_key(scratch, 0, "tawq", "qat") != keys.model_key(fine_tune, 0, "tawq", "qat")


def test_measurement_settings_touch_cells_not_models():
    a = from_mapping(BASE)
    b = from_mapping({**BASE, "measure": {"repeats": 5}, "threads": 2})
    assert keys.stage_key(a, 0, "ptq8", "ptq") == keys.stage_key(b, 0, "ptq8", "ptq")
    assert keys.cell_key(a, 0, "ptq8", "ptq", "cpu", CPU) != keys.cell_key(b, 0, "ptq8", "ptq", "cpu", CPU)
    assert keys.cell_key(a, 0, "ptq8", "ptq", "cpu", CPU) != keys.cell_key(a, 0, "ptq8", "ptq", "cuda", CPU)


def test_hardware_touches_cells_only():
    a = from_mapping(BASE)
    other_cpu = {**CPU, "device": "another CPU model"}
    assert keys.cell_key(a, 0, "ptq8", "ptq", "cpu", CPU) != keys.cell_key(a, 0, "ptq8", "ptq", "cpu", other_cpu)


def _changed(monkeypatch, kind: str, name: str, **change: str) -> None:
    """Pretend the plugin `kind:name` was upgraded or edited."""
    real = fingerprint.plugin
    monkeypatch.setattr(fingerprint, "plugin",
                        lambda k, n: {**real(k, n), **change} if (k, n) == (kind, name) else real(k, n))


ROWS = (("fp32", "none"), ("tawq", "qat"), ("ptq8", "ptq"))


def _all_keys(cfg) -> dict[str, str]:
    found = {}
    for quantizer, mode in ROWS:
        found[f"model:{quantizer}"] = keys.model_key(cfg, 0, quantizer, mode)
        found[f"stage:{quantizer}"] = keys.stage_key(cfg, 0, quantizer, mode)
        for backend in ("cpu", "cuda"):
            found[f"cell:{quantizer}:{backend}"] = keys.cell_key(cfg, 0, quantizer, mode, backend, CPU)
    return found


@pytest.mark.parametrize("kind, name, change, touched", [
    ("quantizer", "ptq8", {"version": "9.9.9"}, {"model:ptq8", "stage:ptq8", "cell:ptq8:cpu", "cell:ptq8:cuda"}),
    ("quantizer", "tawq", {"source": "edited"}, {"model:tawq", "stage:tawq", "cell:tawq:cpu", "cell:tawq:cuda"}),
    ("neuron", "lif", {"source": "edited"}, "all"),  # every model runs the neuron
    ("dataset", "digits", {"distribution": "a-fork"}, "all"),
    ("backend", "cuda", {"version": "2.0"}, {"cell:fp32:cuda", "cell:tawq:cuda", "cell:ptq8:cuda"}),
])
def test_a_plugin_change_invalidates_exactly_what_ran_its_code(monkeypatch, kind, name, change, touched):
    cfg = from_mapping(BASE)
    before = _all_keys(cfg)
    _changed(monkeypatch, kind, name, **change)
    after = _all_keys(cfg)
    expected = set(before) if touched == "all" else touched
    assert {k for k in before if before[k] != after[k]} == expected


def test_torch_version_is_part_of_every_model(monkeypatch):
    cfg = from_mapping(BASE)
    before = _all_keys(cfg)
    monkeypatch.setattr(fingerprint.torch, "__version__", "0.0.0-other")
    after = _all_keys(cfg)
    assert all(before[k] != after[k] for k in before)


def _write_plugin_package(root: Path, helper_body: str) -> None:
    package = root / "h2_fingerprint_pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "factory.py").write_text("def make():\n    from h2_fingerprint_pkg import helper\n"
                                        "    return helper.VALUE\n")
    (package / "helper.py").write_text(helper_body)


def test_source_hash_follows_imports_made_inside_functions(tmp_path, monkeypatch):
    """An edit to a module the plugin imports lazily (like the fused kernels) changes the hash; an edit to an
    unrelated module of another package does not."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_plugin_package(tmp_path, "VALUE = 1\n")
    names = list(fingerprint.package_sources("h2_fingerprint_pkg.factory"))
    assert names == ["h2_fingerprint_pkg", "h2_fingerprint_pkg.factory", "h2_fingerprint_pkg.helper"]
    first = fingerprint.source_digest("h2_fingerprint_pkg.factory")
    assert fingerprint.source_digest("h2_fingerprint_pkg.factory") == first
    _write_plugin_package(tmp_path, "VALUE = 2\n")
    assert fingerprint.source_digest("h2_fingerprint_pkg.factory") != first


def test_builtin_plugins_hash_their_kernels():
    assert "tawq_plugins.quantizers.calcium_fused" in fingerprint.package_sources("tawq_plugins.quantizers.tawq")
    assert "tawq_plugins.neurons.cpu_fused" in fingerprint.package_sources("tawq_plugins.neurons.lif")
    assert "tawq_plugins.quantizers.tawq" not in fingerprint.package_sources("tawq_plugins.quantizers.ptq8")
