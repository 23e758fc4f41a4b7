"""Energy: estimated from operation counts with an energy model, or measured with a backend's meter.

Estimates (`estimate_energy`) multiply the counts of `tawq_core.measure.sops` by per-operation energies from
the presets in ``energy_models.toml`` (Horowitz 2014, 45 nm), in both conventions, each labelled.
Measurements (`measure_energy`) repeat a workload inside the backend's energy meter until the window
is long enough for that meter (an NVML counter refreshes every 20-100 ms) and divide by the calls.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from tawq_core.measure.measurement import Measurement
from tawq_core.measure.sops import OpsReport
from tawq_core.plugin_api.backend import Backend
from tawq_core.plugin_api.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_ENERGY_MODEL = "45nm-fp32"


@dataclass(frozen=True)
class EnergyModel:
    """Picojoules per multiply-accumulate (E_MAC) and per accumulate (E_AC)."""

    name: str
    e_mac_pj: float
    e_ac_pj: float
    description: str = ""


@functools.cache
def energy_models() -> dict[str, EnergyModel]:
    """The presets shipped in ``tawq_core/measure/energy_models.toml``, by name."""
    text = resources.files("tawq_core.measure").joinpath("energy_models.toml").read_text(encoding="utf-8")
    models = {}
    for name, entry in tomllib.loads(text).items():
        values = [entry.get("e_mac_pj"), entry.get("e_ac_pj")]
        if not all(isinstance(v, (int, float)) and v > 0 for v in values):
            raise ConfigError(f"energy model {name!r} needs positive e_mac_pj and e_ac_pj, got {values}")
        models[name] = EnergyModel(name, float(values[0]), float(values[1]), str(entry.get("description", "")))
    return models


def get_energy_model(model: str | EnergyModel) -> EnergyModel:
    if isinstance(model, EnergyModel):
        return model
    presets = energy_models()
    if model not in presets:
        raise ConfigError(f"unknown energy model {model!r}; known: {', '.join(sorted(presets))}")
    return presets[model]


def estimate_energy(report: OpsReport, energy_model: str | EnergyModel = DEFAULT_ENERGY_MODEL) -> dict[str, Any]:
    """Estimated joules per input sample (all T timesteps) in both conventions.

    Returns ``{"energy_model": {...}, "conventional": Measurement, "exact": Measurement}``; each
    Measurement's method names its convention and constants, its details hold the operation counts.
    """
    m = get_energy_model(energy_model)
    constants = f"{m.name}: E_MAC {m.e_mac_pj:g} pJ, E_AC {m.e_ac_pj:g} pJ; per sample over T={report.timesteps}"

    def joules(mac: float, ac: float) -> float:
        return (m.e_mac_pj * mac + m.e_ac_pj * ac) * 1e-12

    conventional = Measurement(
        joules(report.conventional_mac, report.conventional_ac), "J",
        "estimate, conventional (syops) convention: E_MAC·T·MACs of the stem and non-binary-input layers + "
        f"E_AC·Σ T·(input firing rate)·MACs of spike-fed layers ({constants})",
        {"mac_ops": report.conventional_mac, "ac_ops": report.conventional_ac, "convention": "conventional"},
    )
    exact = Measurement(
        joules(report.exact_mac, report.exact_ac), "J",
        "estimate, exact ternary-aware convention: E_AC per (input spike, non-zero weight) pair + E_MAC per "
        f"(non-zero non-binary input, non-zero weight) pair, counted per timestep ({constants})",
        {"mac_ops": report.exact_mac, "ac_ops": report.exact_ac, "convention": "exact"},
    )
    return {"energy_model": asdict(m), "conventional": conventional, "exact": exact}


def measure_energy(
    backend: Backend,
    fn: Callable[[], Any],
    min_seconds: float | None = None,
    warmup: int = 1,
    max_calls: int = 1_000_000,
) -> Measurement:
    """Joules per call of `fn`, metered by ``backend.energy_meter()`` over at least `min_seconds`.

    `min_seconds` defaults to the backend's ``energy_min_window_s``. `fn` is repeated in chunks (with a
    synchronize after each) until the window is reached or `max_calls` calls have run; the meter's
    figure is divided by the number of calls. The figure is the device's (or CPU packages') whole
    energy during the calls, idle power included. When the meter is unavailable the workload is not
    run and the reason is returned.
    """
    window = backend.energy_min_window_s if min_seconds is None else min_seconds
    if not (isinstance(window, (int, float)) and window > 0 and math.isfinite(window)):
        raise ConfigError(f"min_seconds must be a positive number of seconds, got {min_seconds!r}")
    if not isinstance(max_calls, int) or max_calls < 1:
        raise ConfigError(f"max_calls must be a positive integer, got {max_calls!r}")
    ok, reason = backend.energy_availability()
    if not ok:
        return Measurement.unavailable("J", reason)
    for _ in range(warmup):
        fn()
    backend.synchronize()
    start = time.perf_counter()
    fn()
    backend.synchronize()
    per_call = max(time.perf_counter() - start, 1e-7)
    chunk = max(1, min(max_calls, int(window / 10 / per_call)))  # about ten synchronizations per window
    calls = 0
    with backend.energy_meter() as reading:
        start = time.perf_counter()
        while calls < max_calls:
            for _ in range(min(chunk, max_calls - calls)):
                fn()
            calls += min(chunk, max_calls - calls)
            backend.synchronize()
            if time.perf_counter() - start >= window:
                break
    total = reading.result
    details = {**total.details, "calls": calls, "min_window_s": window}
    if not total.available:
        return Measurement.unavailable("J", total.method.removeprefix("unavailable: "), **details)
    assert total.value is not None
    return Measurement(
        total.value / calls, "J",
        f"{total.method}; {calls} calls of the workload in the window (>= {window:g} s requested), "
        "energy divided by the calls (idle power included)",
        {**details, "total_j": total.value},
    )
