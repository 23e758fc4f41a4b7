"""`check_backend`: availability that explains itself, a timer that measures, meters that report."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from tawq_core.measure.measurement import Measurement
from tawq_core.plugin_api.backend import Backend, MeterReading
from tawq_core.plugin_api.errors import BackendUnavailable
from tawq_core.testing.subject import CheckReport, Subject, resolve

WORK_S = 0.02


def _availability(s: Subject, b: Backend, report: CheckReport) -> bool:
    answer = s.call("is_available()", b.is_available)
    if not isinstance(answer, tuple) or len(answer) != 2 or not isinstance(answer[1], str):
        s.fail(f"is_available() returned {answer!r}, expected Availability(available: bool, reason: str)")
    available, reason = bool(answer[0]), answer[1]
    if available:
        return True
    if not reason.strip():
        s.fail("is_available() says unavailable without a reason")
    try:
        b.require()
    except BackendUnavailable:
        report.passed("unavailable here with a reason; require() refuses with BackendUnavailable")
        report.notes.append(f"unavailable here, device checks skipped: {reason}")
        return False
    except (KeyboardInterrupt, AssertionError):
        raise
    except BaseException as exc:  # noqa: B036
        s.fail(f"require() raised {type(exc).__name__} instead of BackendUnavailable")
    s.fail("require() accepted an unavailable backend")


def _timer(s: Subject, b: Backend) -> None:
    x = torch.randn(64, 64, device=b.device)
    timer = s.call("timer()", b.timer)
    started = time.perf_counter()
    with timer:
        deadline = time.perf_counter() + WORK_S
        while time.perf_counter() < deadline:
            x = (x @ x).tanh()
        s.call("synchronize()", b.synchronize)
    wall = time.perf_counter() - started
    elapsed = s.call("timer.elapsed_s", lambda: timer.elapsed_s)
    if not isinstance(elapsed, float) or not math.isfinite(elapsed) or not 0 < elapsed <= wall + 1e-3:
        s.fail(f"timer measured {elapsed!r} s for a region that took {wall:.4f} s of wall time")
    if not isinstance(getattr(timer, "method", None), str) or not timer.method:
        s.fail("its Timer does not say how it measures (class attribute `method`)")


def _meter(s: Subject, b: Backend, which: str) -> None:
    meter = s.call(f"{which}()", getattr(b, which))
    with meter as reading:
        torch.ones(256, 256, device=b.device).sum()
        s.call("synchronize()", b.synchronize)
    if not isinstance(reading, MeterReading) or not isinstance(reading.result, Measurement):
        s.fail(f"{which}() must yield a MeterReading whose result is a tawq_core.Measurement")


def check_backend(backend: Any, **options: Any) -> CheckReport:
    """Check a backend (registered name, factory, class or instance) against the backend contract.

    Where the backend is unavailable, checks that it says why and that `require()` refuses; where it
    is available, also the device, synchronize, the timer, the memory and energy meters and describe().
    """
    s = resolve("backend", backend, Backend, options)
    report = CheckReport(s.label)
    b = s.make(Backend)
    if not isinstance(b.name, str) or not b.name:
        s.fail("needs a non-empty `name`")
    if not _availability(s, b, report):
        return report
    device = s.call("device", lambda: b.device)
    if not isinstance(device, torch.device):
        s.fail(f"device is {device!r}, not a torch.device")
    _timer(s, b)
    _meter(s, b, "peak_memory")
    _meter(s, b, "energy_meter")
    described = s.call("describe()", b.describe)
    if not isinstance(described, dict) or described.get("backend") != b.name:
        s.fail(f"describe() must return a dict with 'backend': {b.name!r}, got {described!r}")
    s.json("describe()", described)
    report.passed("available; device, synchronize, timer within wall time, memory and energy meters "
                  "give Measurements, describe() is JSON")
    return report
