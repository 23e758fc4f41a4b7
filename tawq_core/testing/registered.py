"""Run the checks on registered plugins and collect one outcome per plugin (`tawq plugins --check`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tawq_core.plugin_api.errors import ConfigError
from tawq_core.plugin_api.registry import PluginEntry, get_registry
from tawq_core.testing.backend import check_backend
from tawq_core.testing.dataset import check_dataset
from tawq_core.testing.model import check_model
from tawq_core.testing.neuron import check_neuron
from tawq_core.testing.quantizer import check_quantizer
from tawq_core.testing.subject import CheckReport, ConformanceError

CHECKS: dict[str, Callable[..., CheckReport]] = {
    "quantizer": check_quantizer,
    "neuron": check_neuron,
    "model": check_model,
    "dataset": check_dataset,
    "backend": check_backend,
}


@dataclass(frozen=True)
class Outcome:
    """One row of the table: PASS, PARTIAL (passed, but something could not be checked here) or FAIL."""

    kind: str
    name: str
    distribution: str
    status: str
    detail: str
    checks: tuple[str, ...] = ()  # what was verified

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "distribution": self.distribution,
                "status": self.status, "detail": self.detail, "checks": list(self.checks)}


def _entries(names: Sequence[str]) -> list[PluginEntry]:
    entries = get_registry().entries()
    if not names:
        return entries
    chosen = [e for e in entries if e.name in names]
    unknown = sorted(set(names) - {e.name for e in chosen})
    if unknown:
        raise ConfigError(f"no registered plugin is named {', '.join(map(repr, unknown))}; "
                          "`tawq plugins` lists them")
    return chosen


def check_one(entry: PluginEntry) -> Outcome:
    dist = f"{entry.distribution} {entry.version}"
    try:
        report = CHECKS[entry.kind](entry.name)
    except ConformanceError as exc:
        return Outcome(entry.kind, entry.name, dist, "FAIL", str(exc).split(": ", 1)[-1])
    if report.notes:
        detail = "; ".join(report.notes)
        short = detail if len(detail) <= 160 else detail[:157] + "..."
        return Outcome(entry.kind, entry.name, dist, "PARTIAL", short, tuple(report.checks))
    return Outcome(entry.kind, entry.name, dist, "PASS", "all checks passed (--json lists them)",
                   tuple(report.checks))


def check_registered(names: Sequence[str] = (), on_result: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Check every registered plugin (or those named) and return one `Outcome` each."""
    outcomes = []
    for entry in _entries(names):
        outcome = check_one(entry)
        if on_result is not None:
            on_result(outcome)
        outcomes.append(outcome)
    return outcomes
