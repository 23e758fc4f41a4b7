"""Which integer product the deployed CPU layers use, chosen by measurement on this machine.

``torch._int_mm`` (oneDNN) is several times faster than float32 GEMM where the CPU has int8 dot-product
instructions (AVX-512 VNNI, AVX-VNNI, AMX), and ~30x slower where it has not: on an AVX2-only AMD EPYC,
``[64x256]·[256x128]`` took 1.6 ms in int8 and 0.05 ms in float32 (one thread). So the first deployed
forward times both on that small product (a few milliseconds at worst, on one thread: the ratio is what
counts) and keeps the faster one for the process. Both are exact: integer weights and spikes are exact in
float32 and every sum stays far below 2^24, so the choice changes speed, never results.
``TAWQ_INT8_GEMM=on|off`` skips the probe.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache

import torch

ENV = "TAWQ_INT8_GEMM"
_PROBE = (64, 256, 128)  # rows, fan-in, outputs: 2 M multiply-adds


@dataclass(frozen=True)
class GemmChoice:
    int8: bool
    why: str  # recorded in provenance: what was measured or set


def _best_ms(run, repeats: int = 5) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


@cache
def choice() -> GemmChoice:
    """The integer product for this process (see module docstring)."""
    setting = os.environ.get(ENV, "auto").strip().lower()
    if setting in ("on", "off"):
        return GemmChoice(setting == "on", f"{ENV}={setting}")
    rows, fan_in, outputs = _PROBE
    gen = torch.Generator().manual_seed(0)
    a8 = torch.randint(0, 2, (rows, fan_in), dtype=torch.int8, generator=gen)
    b8 = torch.randint(-1, 2, (fan_in, outputs), dtype=torch.int8, generator=gen)
    a32, b32 = a8.float(), b8.float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ratio is what counts; with 2 threads on a busy machine both spin
    try:
        int8_ms = _best_ms(lambda: torch._int_mm(a8, b8))
        fp32_ms = _best_ms(lambda: torch.mm(a32, b32))
    finally:
        torch.set_num_threads(threads)
    measured = f"[{rows}x{fan_in}]x[{fan_in}x{outputs}]: int8 {int8_ms:.3f} ms, float32 {fp32_ms:.3f} ms"
    return GemmChoice(int8_ms < fp32_ms, f"probe {measured}")
