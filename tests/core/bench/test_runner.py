"""The bench end to end on a tiny preset: files, resume without recomputation, errors, backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli_in_process

from tawq_core.bench import cells, load_preset, run_bench


def _cli(*args: str) -> tuple[int, str, str]:
    result = cli_in_process(*args)
    return result.returncode, result.stdout, result.stderr


def _mtimes(run_dir: Path) -> dict[str, int]:
    """The shared cache next to the run directory (``<out>/cache``)."""
    return {str(p): p.stat().st_mtime_ns for p in (run_dir.parent / "cache").rglob("*") if p.is_file()}


def test_cli_run_files_resume_and_report(tiny_preset, tmp_path):
    out = tmp_path / "results"
    first = cli_in_process("bench", "--preset", tiny_preset, "--out", out, "--quiet")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # --quiet: nothing but the matrix
    (run_dir,) = (p for p in out.iterdir() if p.name != "cache")
    assert run_dir.name.startswith("tiny-") and (out / "cache" / "cells").is_dir()
    for name in ("results.json", "matrix.csv", "matrix.md", "config.json", "accuracy_vs_energy.png",
                 "accuracy_vs_bits.png"):
        assert (run_dir / name).is_file(), name
    assert first.stdout == (run_dir / "matrix.md").read_text()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["complete"] is True
    assert [(r["quantizer"], r["backend"]) for r in results["records"]] == [
        ("fp32", "cpu"), ("tawq", "cpu"), ("ptq8", "cpu")]
    for record in results["records"]:
        assert 0.0 <= record["top1"] <= 100.0 and record["status"] == "ok"
        assert record["config_hash"] == results["config_hash"]
        assert record["provenance"]["torch"] and record["provenance"]["plugins"]["quantizer:tawq"]
        assert record["latency"]["batch_median_s"] > 0
    # which kernels ran is recorded after they ran: the deployed layers' product choice, tawq's neurons
    assert {"cpu.int8-gemm", "neuron (numba, CPU)"} <= set(results["provenance"]["kernels"])
    before = _mtimes(run_dir)

    again = cli_in_process("bench", "--preset", tiny_preset, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "0 cell(s) computed, 3 from cache" in again.stderr
    assert "training" not in again.stderr and "loading dataset" not in again.stderr
    assert _mtimes(run_dir) == before
    assert again.stdout == first.stdout

    (run_dir / "matrix.md").unlink()
    code, report, err = _cli("report", str(run_dir), "--no-plots")
    assert code == 0, err
    assert report == first.stdout == (run_dir / "matrix.md").read_text()


def test_interrupted_run_resumes_without_recomputing(tiny_preset, tmp_path, monkeypatch):
    cfg = load_preset(str(tiny_preset))
    real_measure, calls = cells.measure, []

    def measure_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(cells, "measure", measure_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_bench(cfg, tmp_path)
    run_dir = tmp_path / cfg.run_id
    partial = json.loads((run_dir / "results.json").read_text())  # consistent: the finished cell only
    assert partial["complete"] is False and [r["quantizer"] for r in partial["records"]] == ["fp32"]
    assert not list(run_dir.rglob("*.tmp"))
    monkeypatch.setattr(cells, "measure", real_measure)
    trained = []
    monkeypatch.setattr("tawq_core.pipeline.produced.train", lambda *a, **k: trained.append(1) or _fail())
    result = run_bench(cfg, tmp_path)  # the QAT model was checkpointed before the interrupt: no training
    assert result.cached == ["0/fp32/cpu"] and result.computed == ["0/tawq/cpu", "0/ptq8/cpu"]
    assert trained == []


def _fail():
    raise AssertionError("nothing should be retrained on resume")


def test_force_recomputes_everything(tiny_preset, tmp_path):
    cfg = load_preset(str(tiny_preset)).with_overrides(quantizers=["ptq8"])
    first = run_bench(cfg, tmp_path)
    assert len(first.computed) == 2
    forced = run_bench(cfg, tmp_path, force=True)
    assert forced.computed == first.computed and forced.cached == []


def test_two_backends_one_unavailable_and_two_seeds(tiny_preset, tmp_path):
    cfg = load_preset(str(tiny_preset)).with_overrides(quantizers=["ptq8"], backends=["cpu", "cuda"], seeds="0,1")
    result = run_bench(cfg, tmp_path)
    records = result.results["records"]
    cuda = [r for r in records if r["backend"] == "cuda"]
    assert len(records) == 8 and len(cuda) == 4
    assert all(r["status"] == "unavailable" and "CUDA" in r["reason"] for r in cuda)
    rows = {(r["quantizer"], r["backend"]): r for r in result.results["rows"]}
    assert rows[("fp32", "cuda")]["top1_mean"] == rows[("fp32", "cpu")]["top1_mean"]
    assert rows[("fp32", "cpu")]["top1_std"] is not None
    assert "backend unavailable: " in result.markdown


@pytest.mark.parametrize("args, fragment", [
    (["--backend", "cuda"], "backend 'cuda' is unavailable"),
    (["--quantizers", "tawq,nope"], "unknown quantizer 'nope'; known quantizers: "),
    (["--timesteps", "0"], "timesteps must be an integer >= 1"),
    (["--seeds", "x"], "seeds must be integers"),
    (["--model", "sew-resnet"], "invalid model_options for model 'sew-resnet': got an unexpected keyword"),
    (["--dataset", "nope"], "unknown dataset 'nope'; known datasets: "),
])
def test_bad_input_is_one_line_exit_2(tiny_preset, tmp_path, args, fragment):
    code, out, err = _cli("bench", "--preset", str(tiny_preset), "--out", str(tmp_path / "r"), *args)
    assert code == 2 and fragment in err and err.count("\n") == 1 and out == ""
    assert not (tmp_path / "r").exists()  # nothing written before the input was validated


def test_unwritable_output_is_one_line_exit_2(tiny_preset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = _cli("bench", "--preset", str(tiny_preset), "--out", str(blocker / "r"))
    assert code == 2 and "is not writable" in err and err.count("\n") == 1


@pytest.mark.parametrize("preset", ["cifar10-dvs-spikingformer", "shd-mlp", "cifar100-spikingformer-4-384",
                                    "imagenet-spikingformer-8-384", "imagenet-qkformer-10-384"])
def test_paper_presets_need_their_data(tmp_path, preset):
    code, _, err = _cli("bench", "--preset", preset, "--backend", "cpu", "--data-dir", str(tmp_path),
                        "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2 and str(tmp_path) in err and err.count("\n") == 1, err


def test_report_of_a_directory_without_results(tmp_path):
    code, _, err = _cli("report", str(tmp_path))
    assert code == 2 and "results.json' not found" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text('{"format": 99}')
    code, _, err = _cli("report", str(tmp_path))
    assert code == 2 and "is not a tawq results file" in err
