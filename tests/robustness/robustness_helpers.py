"""Helpers of the robustness tests: the tiny bench preset, real CLI processes (bench runs sent signals), snapshots."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: digits + a 16-unit spiking MLP, one epoch, fp32 + two quantizers, one thread: a real bench in seconds.
#: QAT trains two epochs so the run is still busy when the first cell lands (the interruption window).
TINY_PRESET = """
name = "tiny"
dataset = "digits"
model = "mlp"
timesteps = 2
quantizers = ["fp32", "tawq", "ptq8"]
backends = ["cpu"]
seeds = [0]
threads = 1

[model_options]
hidden = [16, 16]

[train]
epochs = 1
batch_size = 64
lr = 0.01
warmup_epochs = 0.0

[qat]
epochs = 2

[measure]
batch_size = 32
warmup = 1
repeats = 3
energy_seconds = 0.05
ops_batches = 1
calibration_batches = 2
"""

#: One torch thread per CLI process: several run side by side on a 2-core machine.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def cli_env(extra_path: Iterable[Path] = (), env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a fresh `tawq` process: no TAWQ_* settings of the caller, one thread."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("TAWQ_")}
    full.pop("PYTHONPATH", None)
    paths = [str(p) for p in extra_path]
    if paths:
        full["PYTHONPATH"] = os.pathsep.join(paths)
    return {**full, **ONE_THREAD, **(env or {})}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tawq_core.cli", *map(str, args)]


def run_cli(*args: str, extra_path: Iterable[Path] = (), env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    """The real CLI in a fresh interpreter (entry points re-read), like a user's shell would run it."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=cli_env(extra_path, env),
                          timeout=timeout)


def run_many(calls: dict[str, dict[str, Any]], workers: int = 3) -> dict[str, subprocess.CompletedProcess]:
    """Run independent CLI calls side by side (each call: ``{"args": [...], "extra_path": [...], "env": {}}``)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_cli, *call["args"], extra_path=call.get("extra_path", ()),
                                     env=call.get("env")) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (relative paths): 'nothing already written was damaged'."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_kept(root: Path, before: dict[str, str]) -> None:
    after = file_hashes(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"changed or removed by a failed command: {changed}"


# -- bench runs that are interrupted ------------------------------------------------------------------------
@dataclass
class BenchRun:
    """One `tawq bench` process: its output root, exit code and streams."""

    out: Path
    returncode: int
    stdout: str
    stderr: str
    #: cache files present when the signal was sent (or at the end), relative path -> mtime_ns
    cache_at_signal: dict[str, int]

    @property
    def run_dir(self) -> Path:
        (run_dir,) = [p for p in self.out.iterdir() if p.is_dir() and p.name != "cache"]  # cache: shared
        return run_dir

    def results(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "results.json").read_text())


def cache_mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("cache/*/*")) if p.is_file()}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def bench(preset: Path, out: Path, *, quiet: bool = True, extra_path: Iterable[Path] = (),
          interrupt: signal.Signals | None = None, timeout: float = 240) -> BenchRun:
    """Run ``tawq bench --preset PRESET --out OUT``; with `interrupt`, send that signal as soon as the first
    finished cell is on disk (the store renames each cell file into place, so its presence means done)."""
    args = ["bench", "--preset", str(preset), "--out", str(out), *(["--quiet"] if quiet else [])]
    # A shell starts background jobs with SIGINT ignored, and children inherit that: give the CLI the default
    # Ctrl-C behaviour a user's terminal would, whatever started this test run.
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(extra_path), preexec_fn=_default_sigint)
    at_signal: dict[str, int] = {}
    if interrupt is not None:
        deadline = time.monotonic() + timeout
        while not list(out.glob("cache/cells/*.json")):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"bench ended or hung before its first cell: {proc.communicate()[1]}")
            time.sleep(0.02)
        at_signal = cache_mtimes(out)
        proc.send_signal(interrupt)
    stdout, stderr = proc.communicate(timeout=timeout)
    return BenchRun(out, proc.returncode, stdout, stderr, at_signal or cache_mtimes(out))
