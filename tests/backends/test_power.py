"""Power-trace integration and the background sampler, with a stand-in power reader."""

from __future__ import annotations

import time

import pytest

from tawq_backends._power import PowerSampler, integrate_power, sampled_energy


def test_integrate_constant_power_is_power_times_window():
    samples = [(0.0, 10.0), (0.5, 10.0), (1.0, 10.0)]
    assert integrate_power(samples, 0.0, 1.0) == pytest.approx(10.0)


def test_integrate_linear_ramp_is_exact_with_trapezoids():
    samples = [(0.0, 0.0), (1.0, 10.0), (2.0, 20.0)]
    # ∫0^2 10t dt = 20
    assert integrate_power(samples, 0.0, 2.0) == pytest.approx(20.0)


def test_integrate_clips_to_window_by_interpolation():
    samples = [(0.0, 0.0), (2.0, 20.0)]
    # ∫0.5^1.5 10t dt = 5 * (1.5² - 0.5²) = 10
    assert integrate_power(samples, 0.5, 1.5) == pytest.approx(10.0)


def test_integrate_holds_end_values_outside_the_samples():
    samples = [(1.0, 4.0), (2.0, 8.0)]
    # [0,1] held at 4 W -> 4 J; [1,2] trapezoid -> 6 J; [2,3] held at 8 W -> 8 J
    assert integrate_power(samples, 0.0, 3.0) == pytest.approx(18.0)


def test_integrate_unsorted_samples_and_empty_window():
    assert integrate_power([(1.0, 2.0), (0.0, 2.0)], 0.0, 1.0) == pytest.approx(2.0)
    assert integrate_power([(0.0, 5.0)], 1.0, 1.0) == 0.0
    assert integrate_power([], 0.0, 1.0) == 0.0


def test_sampler_collects_stamped_samples_until_stopped():
    sampler = PowerSampler(lambda: 42.0, interval_s=0.005)
    sampler.start()
    time.sleep(0.05)
    sampler.stop()
    assert len(sampler.samples) >= 3
    times = [t for t, _ in sampler.samples]
    assert times == sorted(times)
    assert {p for _, p in sampler.samples} == {42.0}
    assert sampler.error is None


def test_sampled_energy_with_stand_in_constant_reader_is_power_times_window():
    synced = []
    with sampled_energy(lambda: 25.0, lambda: synced.append(True), interval_s=0.01,
                        source="stand-in reader", min_window_s=0.0) as reading:
        time.sleep(0.05)
    result = reading.result
    assert synced == [True]
    assert result.available and result.unit == "J"
    assert result.value == pytest.approx(25.0 * result.details["window_s"])
    assert result.details["samples"] >= 3
    assert "stand-in reader" in result.method and "trapezoid" in result.method


def test_sampled_energy_refuses_a_window_shorter_than_its_minimum():
    with sampled_energy(lambda: 25.0, lambda: None, interval_s=0.01, source="stand-in reader",
                        min_window_s=10.0) as reading:
        pass
    assert not reading.result.available
    assert "shorter than" in reading.result.method


def test_sampled_energy_reports_a_reader_that_fails_at_once():
    def broken() -> float:
        raise OSError("device gone")

    with sampled_energy(broken, lambda: None, interval_s=0.01, source="stand-in reader", min_window_s=0.0) as r:
        pass
    assert not r.result.available
    assert "device gone" in r.result.method


def test_sampled_energy_reports_a_reader_that_fails_midway():
    calls = []

    def flaky() -> float:
        calls.append(1)
        if len(calls) > 2:
            raise OSError("lost contact")
        return 10.0

    with sampled_energy(flaky, lambda: None, interval_s=0.005, source="stand-in reader", min_window_s=0.0) as r:
        time.sleep(0.05)
    assert not r.result.available
    assert "lost contact" in r.result.method
