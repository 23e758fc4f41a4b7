"""Where a result came from: versions of tawq, torch and every plugin used, the machine, the commit, and
which compiled kernels ran (and why a faster one did not).

Recorded in every cell so a number pasted into a paper can be traced and reproduced. The kernel record
(`tawq_core.jit.kernel_use`) counts every choice made in this process so far: a slow latency next to
``"not run: numba could not be imported (...)"`` explains itself.
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from tawq_core.jit import kernel_use
from tawq_core.measure.hardware import cpu_model_name
from tawq_core.plugin_api.registry import get_registry


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit of the tawq source tree, or "n/a: reason" for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"n/a: {type(exc).__name__}"
    if done.returncode != 0:
        return "n/a: not a git checkout"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return done.stdout.strip() + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def plugin_versions(used: dict[str, list[str]]) -> dict[str, str]:
    """``{"quantizer:tawq": "tawq 0.1.0", ...}`` for the plugins a run used."""
    registry = get_registry()
    out = {}
    for kind, names in used.items():
        for name in names:
            entry = registry.entry(kind, name)
            out[f"{kind}:{name}"] = f"{entry.distribution} {entry.version}"
    return out


def provenance(used: dict[str, list[str]]) -> dict[str, Any]:
    from tawq_core import __version__

    return {
        "tawq": __version__,
        "torch": torch.__version__,
        "plugins": plugin_versions(used),
        "machine": machine(),
        "git_sha": git_sha(),
        "kernels": kernel_use(),
    }
