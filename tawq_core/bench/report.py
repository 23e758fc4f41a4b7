"""results.json -> matrix.md, matrix.csv and plots, for a live run and for `tawq report DIR`.

results.json is the single source of truth: the matrices and plots are always derived from its
records, so re-rendering an old run (or an interrupted one) gives the same tables the run printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tawq_core.bench.aggregate import aggregate
from tawq_core.bench.plots import write_plots
from tawq_core.bench.render import csv_text, markdown
from tawq_core.bench.results_schema import check_results
from tawq_core.bench.store import write_json_atomic, write_text_atomic
from tawq_core.plugin_api.errors import ConfigError

RESULTS = "results.json"
RESULTS_FORMAT = 1


def rows_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = results["config"]
    return aggregate(results["records"], list(cfg["quantizers"]), list(cfg["backends"]))


def write_outputs(run_dir: Path, results: dict[str, Any], plots: bool = True) -> tuple[dict[str, Any], str]:
    """Write results.json (with the aggregated rows added), matrix.csv, matrix.md and plots.

    Returns the results as written and the Markdown."""
    rows = rows_of(results)
    results = {**results, "rows": rows}
    write_json_atomic(run_dir / RESULTS, results)
    write_text_atomic(run_dir / "matrix.csv", csv_text(rows))
    text = markdown(results, rows)
    write_text_atomic(run_dir / "matrix.md", text)
    if plots and rows:
        cfg = results["config"]
        write_plots(rows, run_dir, f"{cfg['model']} on {cfg['dataset']}, T = {cfg['timesteps']}")
    return results, text


def load_results(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} not found; pass the run directory that `tawq bench` printed")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{str(path)!r} is not readable JSON ({exc}); re-run the bench to rebuild it") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT or "records" not in data:
        raise ConfigError(f"{str(path)!r} is not a tawq results file of format {RESULTS_FORMAT}")
    check_results(data, path)
    return data


def render_run(run_dir: Path, plots: bool = True) -> str:
    """Re-render a run directory from its results.json; returns the Markdown matrix."""
    run_dir = Path(run_dir)
    return write_outputs(run_dir, load_results(run_dir), plots=plots)[1]
