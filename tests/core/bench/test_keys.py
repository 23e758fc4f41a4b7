"""Cache keys re-do only what a change affects."""

from __future__ import annotations

from tawq_core.bench import keys
from tawq_core.bench.config import from_mapping

BASE = {"dataset": "digits", "model": "mlp", "timesteps": 4, "quantizers": ["tawq", "ptq8"]}


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
    assert keys.cell_key(a, 0, "ptq8", "ptq", "cpu") != keys.cell_key(b, 0, "ptq8", "ptq", "cpu")
    assert keys.cell_key(a, 0, "ptq8", "ptq", "cpu") != keys.cell_key(a, 0, "ptq8", "ptq", "cuda")
