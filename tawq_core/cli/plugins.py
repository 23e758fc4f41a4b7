"""`tawq plugins`: everything registered, where it came from, what failed to load; ``--check`` runs the
conformance checks (`tawq_core.testing`) and prints a pass/fail table.

Machine-readable output (``--json``) goes to stdout alone: plugin output during loading is captured
by the registry, and everything for humans besides the table goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tawq_core.plugin_api.registry import PluginEntry, get_registry


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
            "entry_point": entry.entry_point,
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
    return {"plugins": rows, "failures": failures, "skipped": registry.skipped,
            "unknown_selection": registry.unknown_selection, "load_output": registry.load_output}


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _check(names: tuple[str, ...], as_json: bool) -> None:
    from tawq_core.testing import check_registered

    def progress(outcome: Any) -> None:
        if not as_json:
            click.echo(f"checked {outcome.kind} {outcome.name}: {outcome.status}", err=True)

    outcomes = check_registered(names, on_result=progress)
    if as_json:
        click.echo(json.dumps({"checks": [o.to_dict() for o in outcomes]}, indent=2))
    else:
        _print_table(("kind", "name", "distribution", "result", "detail"),
                     [(o.kind, o.name, o.distribution, o.status, o.detail) for o in outcomes])
    if any(o.status == "FAIL" for o in outcomes):
        sys.exit(1)  # (click's Exit is swallowed outside standalone mode)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--check", is_flag=True, help="Run the conformance checks (tawq_core.testing) on every plugin, "
              "or on the NAMES given; exit 1 if any fails.")
@click.argument("names", nargs=-1)
def plugins(as_json: bool, check: bool, names: tuple[str, ...]) -> None:
    """List registered quantizers, neurons, backends, models and datasets (or check them: --check [NAME...])."""
    if names and not check:
        raise click.UsageError("plugin names are only taken with --check")
    if check:
        _check(names, as_json)
        return
    data = collect()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    rows = []
    for row in data["plugins"]:
        status = ""
        if "available" in row:
            status = "available" if row["available"] else f"unavailable: {row['reason']}"
        rows.append((row["kind"], row["name"], row["distribution"], row["version"], status))
    _print_table(("kind", "name", "distribution", "version", "status"), rows)
    for failure in data["failures"]:
        click.echo(
            f"FAILED {failure['entry_point']} ({failure['distribution']} {failure['version']}): "
            f"{failure['error']}",
            err=True,
        )
    for skipped in data["skipped"]:
        click.echo(f"skipped {skipped}", err=True)
    for unknown in data["unknown_selection"]:
        click.echo(f"warning: {unknown}", err=True)
    for printed in data["load_output"]:
        click.echo(f"note: plugin {printed}", err=True)
