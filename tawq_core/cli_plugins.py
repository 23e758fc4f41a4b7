"""`tawq plugins`: everything registered, where it came from, and what failed to load."""

from __future__ import annotations

import json
from typing import Any

import click

from tawq_core.registry import PluginEntry, get_registry


def _availability(entry: PluginEntry) -> tuple[bool | None, str]:
    if entry.kind != "backend":
        return None, ""
    try:
        ok, reason = entry.factory().is_available()
    except Exception as exc:  # a third-party backend must not break the listing
        return False, f"availability check raised {type(exc).__name__}: {exc}"
    return bool(ok), reason


def collect() -> dict[str, Any]:
    registry = get_registry()
    rows = []
    for entry in registry.entries():
        row = {
            "kind": entry.kind,
            "name": entry.name,
            "distribution": entry.distribution,
            "version": entry.version,
            "module": entry.module,
        }
        available, reason = _availability(entry)
        if available is not None:
            row["available"] = available
            row["reason"] = reason
        rows.append(row)
    failures = [
        {"distribution": f.distribution, "version": f.version, "entry_point": f.entry_point, "error": f.error}
        for f in registry.failures
    ]
    return {"plugins": rows, "failures": failures, "skipped": registry.skipped}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List registered quantizers, neurons, backends, models and datasets."""
    data = collect()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    header = ("kind", "name", "distribution", "version", "status")
    table = [header]
    for row in data["plugins"]:
        status = ""
        if "available" in row:
            status = "available" if row["available"] else f"unavailable: {row['reason']}"
        table.append((row["kind"], row["name"], row["distribution"], row["version"], status))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for failure in data["failures"]:
        click.echo(
            f"FAILED {failure['entry_point']} ({failure['distribution']} {failure['version']}): "
            f"{failure['error']}",
            err=True,
        )
    for skipped in data["skipped"]:
        click.echo(f"skipped {skipped}", err=True)
