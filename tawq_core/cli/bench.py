"""`tawq bench`: the quantizer × backend comparison matrix, from a preset and/or flags."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_PRESET = "default"


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


@click.command()
@click.option("--preset", default=None, metavar="NAME|FILE",
              help=f"Shipped preset name or a .toml file (default: {DEFAULT_PRESET}); flags below override it.")
@click.option("--quantizers", default=None, metavar="Q1,Q2", help="Quantizers to compare; fp32 is always added.")
@click.option("--backend", "backends", default=None, metavar="B1,B2",
              help="Backends to measure on, e.g. cpu or cpu,cuda; training uses the first available one.")
@click.option("--model", default=None, help="Model plugin name.")
@click.option("--dataset", default=None, help="Dataset plugin name.")
@click.option("--timesteps", type=int, default=None, help="Timesteps T.")
@click.option("--epochs", type=int, default=None, help="Training epochs (fp32 and QAT).")
@click.option("--batch-size", type=int, default=None, help="Training batch size.")
@click.option("--seeds", default=None, metavar="0,1,2", help="Seeds; the matrix shows mean ± std over them.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: the preset's, else torch's).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False), help="Where dataset files live.")
@click.option("--download", is_flag=True, default=None,
              help="Let dataset plugins fetch missing files (off by default: nothing is downloaded unasked).")
@click.option("--out", "out_dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results root; the run goes to OUT/<preset>-<config hash>/.")
@click.option("--force", is_flag=True, help="Recompute every cell even if a finished one is cached.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; only the matrix (or errors).")
def bench(preset: str | None, quantizers: str | None, backends: str | None, model: str | None,
          dataset: str | None, timesteps: int | None, epochs: int | None, batch_size: int | None,
          seeds: str | None, threads: int | None, data_dir: str | None, download: bool | None, out_dir: str,
          force: bool, quiet: bool) -> None:
    """Train, quantize and measure: accuracy, latency, energy and storage for each quantizer × backend.

    Finished cells are cached under the run directory, so re-running the same command resumes and
    recomputes nothing that had finished; Ctrl-C keeps everything finished so far.
    """
    from tawq_core.bench import Runner, load_preset
    from tawq_core.bench.report import RESULTS
    from tawq_core.overwrite import refuse_overwrite

    config = load_preset(preset or DEFAULT_PRESET).with_overrides(
        quantizers=_csv(quantizers), backends=_csv(backends), model=model, dataset=dataset,
        timesteps=timesteps, epochs=epochs, batch_size=batch_size, seeds=seeds, data_dir=data_dir,
        download=download, threads=threads,
    )
    log = None if quiet else (lambda line: click.echo(line, err=True))
    runner = Runner(config, Path(out_dir), force=force, log=log, progress=False if quiet else None)
    if preset and Path(preset).is_file():  # a preset kept inside the run folder must not be overwritten
        for name in ("config.json", RESULTS, "matrix.md", "matrix.csv"):
            refuse_overwrite(runner.run_dir / name, [preset], "--out")
    try:
        result = runner.run()
    except KeyboardInterrupt:
        from tawq_core.plugin_api.errors import Interrupted

        if not runner.computed:
            raise Interrupted("interrupted before a cell finished in this run; nothing new was saved; re-run the "
                              "same command to resume") from None  # exit code 130
        raise Interrupted(f"interrupted: {len(runner.computed)} cell(s) finished in this run are saved under "
                          f"{runner.run_dir}; re-run the same command to resume") from None
    if result.markdown:
        click.echo(result.markdown, nl=False)
