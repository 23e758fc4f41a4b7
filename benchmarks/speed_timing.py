"""Round-robin timing and the machine facts every speed figure is reported with.

Every comparison in `speed.py` is a ratio of two medians measured in the same run: the cases of one
comparison are timed in turns (A B C, B C A, C A B, ...), so a burst of load from another process hits
all of them alike instead of whichever happened to be running. Python's garbage collector is paused
while a round runs and collected between rounds, so its pauses land on no one.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from tawq_core.measure.hardware import cpu_model_name

ROOT = Path(__file__).resolve().parents[1]


def interleaved(cases: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call of every case, `repeats` samples each after `warmup` untimed rounds."""
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        gc.collect()
        gc.disable()
        try:
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                cases[name]()
                elapsed = (time.perf_counter() - start) * 1e3
                if round_ >= warmup:
                    samples[name].append(elapsed)
        finally:
            gc.enable()
    return samples


def summary(ms: list[float]) -> dict[str, float | int]:
    """Median and quartiles of a list of milliseconds."""
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0], ms[0], ms[0])
    return {"median": round(statistics.median(ms), 4), "p25": round(q1, 4), "p75": round(q3, 4),
            "min": round(min(ms), 4), "n": len(ms)}


def ratio(slow: dict[str, Any] | None, fast: dict[str, Any] | None) -> float | None:
    """How many times faster `fast` is than `slow` (median over median); None if either is missing."""
    if not slow or not fast:
        return None
    return round(slow["median"] / fast["median"], 3)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine(threads: int) -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, threads, library versions, commit."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model_name(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
        "threads": threads, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "platform": platform.platform(),
        "versions": {name: _version(name) for name in ("torch", "spikingjelly", "snntorch", "numba", "numpy")},
        "commit": _commit(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
