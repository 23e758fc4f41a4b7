"""`tawq bench`: train, quantize and measure a quantizer × backend matrix, resumably.

Modules, one job each: `config` (preset/flags -> validated, hashed `BenchConfig`), `keys` (cache
keys per model, stage and cell), `store` (atomic files, the cache), `cells` (a row's `tawq_core.pipeline`
recipe, and what is measured of its model), `runner` (the loop and the cache around the pipeline),
`aggregate`/`render`/`notes`/`plots`/`report` (results.json -> matrix.md, matrix.csv, PNGs), `provenance`
(versions, machine, commit).
"""

from tawq_core.bench.config import BenchConfig, MeasureConfig, from_mapping, load_preset, preset_names
from tawq_core.bench.report import load_results, render_run
from tawq_core.bench.runner import BenchResult, Runner, run_bench

__all__ = [
    "BenchConfig",
    "BenchResult",
    "MeasureConfig",
    "Runner",
    "from_mapping",
    "load_preset",
    "load_results",
    "preset_names",
    "render_run",
    "run_bench",
]
