"""measure_latency: warm-up, per-call timing, median and p90, with a stand-in timer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from tawq_core import Availability, Backend, ConfigError, MeterReading, Timer, create
from tawq_core.measure.latency import LatencyStats, measure_latency


class ScriptedTimer(Timer):
    """A stand-in timer that reports scripted durations instead of measuring."""

    method = "stand-in scripted timer"

    def __init__(self, elapsed: float):
        self._elapsed = elapsed

    def __enter__(self) -> ScriptedTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def elapsed_s(self) -> float:
        return self._elapsed


class ScriptedBackend(Backend):
    """A stand-in backend whose timer returns 1, 2, ..., n seconds in turn."""

    name = "stand-in"

    def __init__(self, durations: list[float]):
        self.durations = iter(durations)
        self.syncs = 0

    def is_available(self) -> Availability:
        return Availability(True, "")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def synchronize(self) -> None:
        self.syncs += 1

    def timer(self) -> Timer:
        return ScriptedTimer(next(self.durations))

    @contextmanager
    def peak_memory(self) -> Iterator[MeterReading]:
        yield MeterReading("B")

    @contextmanager
    def energy_meter(self) -> Iterator[MeterReading]:
        yield MeterReading("J")


def test_statistics_of_scripted_durations():
    calls = []
    backend = ScriptedBackend([float(i) for i in range(1, 11)])
    stats = measure_latency(backend, lambda: calls.append(1), warmup=2, repeats=10)
    assert len(calls) == 12  # 2 warm-up + 10 timed
    assert stats.samples == tuple(float(i) for i in range(1, 11))
    assert stats.median_s == 5.5
    assert stats.p90_s == pytest.approx(9.1)  # linear interpolation, numpy's default
    assert stats.mean_s == 5.5
    assert "stand-in scripted timer" in stats.method and "2 untimed warm-up" in stats.method
    assert stats.to_dict()["repeats"] == 10 and stats.to_dict()["warmup"] == 2


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 5), (0, 0), (1, 2.5), (True, 3)])
def test_bad_counts_are_config_errors(warmup, repeats):
    with pytest.raises(ConfigError):
        measure_latency(ScriptedBackend([1.0]), lambda: None, warmup=warmup, repeats=repeats)


def test_empty_samples_are_refused():
    with pytest.raises(ConfigError):
        LatencyStats.from_samples([], "none")


def test_real_cpu_latency_has_one_sample_per_repeat():
    stats = measure_latency(create("backend", "cpu"), lambda: torch.ones(100).sum(), warmup=1, repeats=4)
    assert len(stats.samples) == 4
    assert all(s > 0 for s in stats.samples)
    assert min(stats.samples) <= stats.median_s <= stats.p90_s <= max(stats.samples)
    assert "perf_counter_ns" in stats.method


def test_a_timer_that_measures_no_time_is_refused_in_one_line():
    """A zero latency cannot be real; dividing by it (throughput) would crash later, so it is refused here."""
    from tawq_backends.cpu import CpuBackend, PerfCounterTimer
    from tawq_core import PluginError

    class Stopped(PerfCounterTimer):
        @property
        def elapsed_s(self) -> float:
            return 0.0

    class StoppedClock(CpuBackend):
        def timer(self):
            return Stopped()

    with pytest.raises(PluginError, match="timer measured 0.0 s"):
        measure_latency(StoppedClock(), lambda: None, warmup=0, repeats=2)
