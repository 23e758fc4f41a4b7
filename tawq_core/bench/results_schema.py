"""The schema of a run's results.json, checked when `tawq report` reads it back.

results.json is the one source the matrices and plots are rendered from, and it is a text file
people open and edit. A hand edit (a seed written as "0", a record without its quantizer, a NaN
accuracy, which Python's JSON reader accepts) used to surface as a KeyError or TypeError deep in the
aggregation. Here every field the renderer reads is checked first, and a violation is one
`ConfigError` naming the file and the field (``records[3].top1``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tawq_core.bench.aggregate import SEED_STATS
from tawq_core.plugin_api.errors import ConfigError

STR, INT, NUMBER, LIST, DICT = "a string", "an integer", "a number", "a list", "a table"


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == STR:
        return isinstance(value, str)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, list if kind == LIST else dict)


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, wanted: str, value: Any, missing: bool = False) -> None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        problem = f"is missing (must be {wanted})" if missing else f"must be {wanted}, got {shown}"
        raise ConfigError(f"{self.path}: field {where} {problem}; the file was edited or damaged: undo the edit, "
                          "or re-run the bench to rebuild it")

    def field(self, data: dict[str, Any], key: str, kind: str, where: str, optional: bool = False,
              nullable: bool = False) -> Any:
        if key not in data:
            if optional:
                return None
            self.fail(f"{where}{key}", kind, None, missing=True)
        value = data[key]
        if not (value is None and nullable) and not _kind_ok(value, kind):
            self.fail(f"{where}{key}", kind + (" or null" if nullable else ""), value)
        return value

    def items(self, values: list[Any], kind: str, where: str) -> None:
        for i, value in enumerate(values):
            if not _kind_ok(value, kind):
                self.fail(f"{where}[{i}]", kind, value)

    def finite(self, value: Any, where: str) -> None:
        """No NaN/inf anywhere in a record (NaN never compares, so it would poison means and drops)."""
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(where, "a finite number", value)
        elif isinstance(value, dict):
            for key, item in value.items():
                self.finite(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.finite(item, f"{where}[{i}]")


def _stat(check: _Checker, record: dict[str, Any], path: str, measurement: bool, where: str) -> None:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return  # an absent parent: the statistic is simply unavailable
        value = value.get(part)
    if measurement:
        if value is not None and not isinstance(value, dict):
            check.fail(f"{where}.{path}", "a measurement table", value)
        if isinstance(value, dict) and value.get("value") is not None and not _kind_ok(value["value"], NUMBER):
            check.fail(f"{where}.{path}.value", NUMBER, value["value"])
    elif value is not None and not _kind_ok(value, NUMBER):
        check.fail(f"{where}.{path}", NUMBER + " or null", value)


def check_results(data: Any, path: Path) -> None:
    """Raise `ConfigError` naming `path` and the field at the first violation of the results.json schema."""
    check = _Checker(path)
    if not isinstance(data, dict):
        check.fail("(top level)", DICT, data)
    for key in ("run_id", "config_hash"):
        check.field(data, key, STR, "")
    cfg = check.field(data, "config", DICT, "")
    for key in ("name", "model", "dataset"):
        check.field(cfg, key, STR, "config.")
    if check.field(cfg, "timesteps", INT, "config.") < 1:
        check.fail("config.timesteps", "an integer >= 1", cfg["timesteps"])
    for key, kind in (("seeds", INT), ("quantizers", STR), ("backends", STR)):
        check.items(check.field(cfg, key, LIST, "config."), kind, f"config.{key}")
    check.items(check.field(data, "notes", LIST, "", optional=True) or [], STR, "notes")
    check.field(data, "provenance", DICT, "", optional=True)
    records = check.field(data, "records", LIST, "")
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(record, dict):
            check.fail(where, DICT, record)
        for key in ("quantizer", "backend", "status"):
            check.field(record, key, STR, f"{where}.")
        check.field(record, "seed", INT, f"{where}.")
        check.field(record, "top1", NUMBER, f"{where}.", optional=True, nullable=True)
        check.field(record, "form", STR, f"{where}.", optional=True, nullable=True)
        check.field(record, "provenance", DICT, f"{where}.", optional=True)
        check.field(record, "train", DICT, f"{where}.", optional=True, nullable=True)
        variants = check.field(record, "variants", DICT, f"{where}.", optional=True) or {}
        for name, variant in [(None, record), *variants.items()]:
            at = where if name is None else f"{where}.variants.{name}"
            if not isinstance(variant, dict):
                check.fail(at, DICT, variant)
            for stat_path, measurement in SEED_STATS.values():
                _stat(check, variant, stat_path, measurement, at)
        check.finite(record, where)
