"""Mixed-precision bench rows: ``[mixed.<row>]`` quantizes with a base quantizer except the matched layers."""

from __future__ import annotations

import dataclasses

import pytest

from tawq_core.bench import load_preset, run_bench
from tawq_core.bench.config import from_mapping
from tawq_core.plugin_api.errors import ConfigError

ROW = {"quantizer": "tawq", "layers": {"body.2.*": "ptq8"}}


def test_a_mixed_row_records_each_layers_quantizer(tiny_preset, tmp_path):
    cfg = load_preset(str(tiny_preset)).with_overrides(quantizers=["tawq", "tawq-ptq8-first"],
                                                       model_options={"hidden": [16, 16, 16]})
    cfg = dataclasses.replace(cfg, mixed={"tawq-ptq8-first": ROW})
    result = run_bench(cfg, tmp_path)
    records = {r["quantizer"]: r for r in result.results["records"]}
    mixed, tawq = records["tawq-ptq8-first"], records["tawq"]
    assert mixed["mode"] == "qat" and mixed["status"] == "ok"
    assert [(s["name"], s["quantizer"]) for s in mixed["quantized_layers"]["swapped"]] == \
        [("body.2.0", "ptq8"), ("body.4.0", "tawq")]
    assert mixed["quantized_layers"]["quantizers"] == ["ptq8", "tawq"]
    assert mixed["stage_key"] != tawq["stage_key"]
    assert "tawq-ptq8-first" in result.markdown


@pytest.mark.parametrize("mixed, message", [
    ({"other": ROW}, "mixed.other defines a row that quantizers does not list"),
    ({"row": {"quantizer": "tawq"}}, "needs exactly the keys quantizer and layers"),
    ({"row": {"quantizer": "tawq", "layers": {}}}, "mixed.row.layers is empty"),
])
def test_bad_mixed_tables_are_config_errors(mixed, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({"dataset": "digits", "model": "mlp", "timesteps": 2, "quantizers": ["tawq", "row"],
                      "mixed": mixed})
