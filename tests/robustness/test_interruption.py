"""A real `tawq bench` stopped after its first finished cell (SIGINT, then SIGKILL) and run again: nothing
that had finished is recomputed, and the final results equal those of an uninterrupted run."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from robustness_helpers import bench, cache_mtimes

from tawq_core.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # real `tawq bench` processes sent SIGINT/SIGKILL, then re-run


def _results_that_must_match(results: dict) -> dict:
    """Everything but timings and meters: accuracy, storage (bits/weight, packed bytes), op counts, estimates."""
    picked = {}
    for r in results["records"]:
        picked[r["quantizer"]] = {
            "top1": r["top1"], "test_samples": r["test_samples"], "storage": r["storage"], "ops": r["ops"],
            "energy_estimates": {k: r["energy"][k]["value"] for k in ("conventional", "exact")},
            "quantized_layers": r["quantized_layers"].get("summary"),
        }
    return picked


@pytest.fixture(scope="module")
def resumed(bench_runs, tiny_preset_file):
    """Both interrupted runs re-run with the same command, side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        sigint = pool.submit(bench, tiny_preset_file, bench_runs.sigint.out, quiet=False)
        sigkill = pool.submit(bench, tiny_preset_file, bench_runs.sigkill.out, quiet=False)
        return {"sigint": sigint.result(), "sigkill": sigkill.result()}


def test_the_uninterrupted_reference_computed_every_cell(bench_runs):
    ref = bench_runs.reference
    assert ref.returncode == 0, ref.stderr
    assert "3 cell(s) computed, 0 from cache" in ref.stderr
    assert ref.results()["complete"] is True


@pytest.mark.parametrize("how, code", [("sigint", 130), ("sigkill", -signal.SIGKILL)])
def test_interrupted_run_leaves_a_consistent_directory(bench_runs, how, code):
    run = getattr(bench_runs, how)
    assert run.returncode == code, run.stderr
    finished = [p for p in run.cache_at_signal if p.startswith("cache/cells/")]
    assert len(finished) >= 1
    for path in (run.out / "cache").rglob("*"):  # only whole files under their real names
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            load_checkpoint(path)
    results_file = run.run_dir / "results.json"
    if how == "sigint":  # Ctrl-C: results.json lists every cell finished before it
        results = json.loads(results_file.read_text())
        assert results["complete"] is False and len(results["records"]) >= len(finished)
    elif results_file.exists():  # SIGKILL: the last write may be missing, never half done
        assert json.loads(results_file.read_text())["complete"] is False


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_rerun_recomputes_nothing_that_had_finished(bench_runs, resumed, how):
    before, again = getattr(bench_runs, how), resumed[how]
    assert again.returncode == 0, again.stderr
    after = cache_mtimes(again.out)
    untouched = {path: mtime for path, mtime in before.cache_at_signal.items() if after.get(path) == mtime}
    assert untouched == before.cache_at_signal  # same files, not rewritten (the fp32 model was not retrained)
    finished_cells = sum(p.startswith("cache/cells/") for p in before.cache_at_signal)
    assert f"{3 - finished_cells} cell(s) computed, {finished_cells} from cache" in again.stderr
    assert "seed 0 · fp32: training" not in again.stderr
    assert again.results()["complete"] is True


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_resumed_results_equal_the_uninterrupted_run(bench_runs, resumed, how):
    reference = _results_that_must_match(bench_runs.reference.results())
    assert list(reference) == ["fp32", "tawq", "ptq8"]
    assert _results_that_must_match(resumed[how].results()) == reference
    assert resumed[how].run_dir.name == bench_runs.reference.run_dir.name  # same config hash


def test_sigint_in_the_middle_of_a_bench(bench_runs):
    """The SIGINT run, before it is resumed: exit 130, one line saying what was saved and how to resume."""
    run = bench_runs.sigint
    assert run.returncode == 130 and "Traceback" not in run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("interrupted: ") and "cell(s) finished in this run are saved under " in line
    assert str(run.run_dir) in line and line.endswith("; re-run the same command to resume")
