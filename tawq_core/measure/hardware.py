"""Facts about the host machine that every result records (one place, so all reports agree)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
