"""`tawq report DIR`: re-render matrix.md, matrix.csv and the plots from a run's results.json."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--no-plots", is_flag=True, help="Only the Markdown and CSV matrices.")
def report(run_dir: Path, no_plots: bool) -> None:
    """Rebuild the matrix of a finished (or interrupted) bench run and print it."""
    from tawq_core.bench import render_run

    click.echo(render_run(run_dir, plots=not no_plots), nl=False)
