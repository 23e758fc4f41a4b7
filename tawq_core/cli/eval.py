"""`tawq eval FILE --dataset NAME`: what an exported packed model gives once deployed.

The file is loaded straight into its deployed form (`tawq_core.load_packed`, packed weights only, tawq's
kernels), then scored on the dataset's test split and timed at batch 1 and at ``--batch-size`` with the
backend's timer; the resident bytes are every tensor the deployed model keeps reachable. A dataset that
does not fit the model (sample shape, classes, time bins) is refused before anything runs.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import click
from torch.utils.data import DataLoader

from tawq_core.cli.train import parse_options
from tawq_core.measure.latency import LatencyStats
from tawq_core.plugin_api.data import DatasetSplits, Encoding, encode_batch
from tawq_core.plugin_api.errors import ConfigError


def _splits(name: str, record: dict[str, Any], data_dir: str | None, download: bool,
            options: dict[str, Any]) -> DatasetSplits:
    """The dataset, checked against what the file's model was built for."""
    from tawq_core.plugin_api.registry import create, get_registry

    T = int(record["timesteps"])
    if "timesteps" in inspect.signature(get_registry().entry("dataset", name).factory).parameters:
        options.setdefault("timesteps", T)  # event data: bin into the model's T frames
    splits = create("dataset", name, data_dir=data_dir, download=download, **options)
    built = record.get("model_options") or {}
    shape, classes = built.get("sample_shape"), built.get("num_classes")
    if shape is not None and tuple(shape) != tuple(splits.sample_shape):
        raise ConfigError(f"dataset {name!r} has samples of shape {tuple(splits.sample_shape)}, the model in the "
                          f"file was built for {tuple(shape)}; evaluate on the dataset it was trained on")
    if classes is not None and int(classes) != splits.num_classes:
        raise ConfigError(f"dataset {name!r} has {splits.num_classes} classes, the model in the file "
                          f"predicts {classes}; evaluate on the dataset it was trained on")
    if splits.encoding is Encoding.TEMPORAL and splits.timesteps != T:
        raise ConfigError(f"dataset {name!r} has {splits.timesteps} time bins per sample, the model runs at "
                          f"T = {T}; pass --dataset-option timesteps={T}")
    if len(splits.test) == 0:
        raise ConfigError(f"dataset {name!r} has an empty test split; nothing to evaluate")
    return splits


def _latency(stats: LatencyStats, batch: int) -> dict[str, Any]:
    return {"batch_size": batch, "median_s": stats.median_s, "p90_s": stats.p90_s, "method": stats.method}


def evaluate_packed(path: Path, dataset: str, backend_name: str = "cpu", batch_size: int = 64, *,
                    data_dir: str | None = None, download: bool = False, dataset_options: dict[str, Any] | None = None,
                    warmup: int = 3, repeats: int = 20) -> dict[str, Any]:
    """Accuracy, latency at batch 1 and `batch_size`, resident bytes and kernels of the deployed packed model."""
    from tawq_core.export.packed_load import load_packed_file
    from tawq_core.pipeline import DEPLOYED, Form, MeasureSpec, measure_form
    from tawq_core.plugin_api.registry import create
    from tawq_core.training.loop import evaluate

    backend = create("backend", backend_name).require()
    loaded = load_packed_file(path, device=backend.device, deploy=True)
    splits = _splits(dataset, loaded.record, data_dir, download, dict(dataset_options or {}))
    T, model = int(loaded.record["timesteps"]), loaded.model
    top1 = evaluate(model, splits.test, splits, T, backend.device, batch_size=batch_size)
    x, _ = next(iter(DataLoader(splits.test, batch_size=batch_size, shuffle=False)))
    x = encode_batch(x, splits.encoding, T).to(backend.device)
    measured = measure_form(Form(DEPLOYED, model), x, MeasureSpec(warmup, repeats), backend)
    latency = [_latency(measured.latency_b1, 1)] + ([_latency(measured.latency, measured.batch)] if
                                                    measured.batch > 1 else [])
    return {"file": str(path), "file_bytes": path.stat().st_size, "model": loaded.record.get("model"),
            "dataset": dataset, "test_samples": len(splits.test), "timesteps": T, "backend": backend.name,
            "top1": 100.0 * top1, "latency": latency, "resident_bytes": measured.resident_bytes,
            "kernels": measured.kernels}


def _summary(r: dict[str, Any]) -> str:
    from tawq_core.pipeline.deployed import kernel_summary

    times = ", ".join(f"batch {t['batch_size']} {1e3 * t['median_s']:.3f} ms (p90 {1e3 * t['p90_s']:.3f})"
                      for t in r["latency"])
    return "\n".join([
        f"{r['file']} ({r['model'] or 'model'}, T = {r['timesteps']}) deployed on {r['backend']}",
        f"top-1: {r['top1']:.2f} % on the {r['dataset']} test split ({r['test_samples']} samples)",
        f"latency: {times}",
        f"resident weights: {r['resident_bytes'] / 1024:,.1f} KiB (file {r['file_bytes'] / 1024:,.1f} KiB)",
        f"kernels: {kernel_summary(r['kernels'])}",
    ])


@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", "dataset_name", required=True, help="Dataset plugin whose test split scores the model.")
@click.option("--backend", "backend_name", default="cpu", show_default=True, help="Backend to deploy and time on.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Evaluation batch and the larger timed batch (the other is 1).")
@click.option("--data-dir", default=None, help="Folder holding dataset files (file-backed datasets).")
@click.option("--download", is_flag=True, help="Let the dataset download missing files.")
@click.option("--dataset-option", "dataset_pairs", multiple=True, metavar="KEY=VALUE")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True, help="Timed calls per batch.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed calls first.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_packed(file: Path, dataset_name: str, backend_name: str, batch_size: int, data_dir: str | None,
                download: bool, dataset_pairs: tuple[str, ...], repeats: int, warmup: int, as_json: bool) -> None:
    """Evaluate a packed model (`tawq export --format tawq`) in its deployed form: accuracy, latency, memory."""
    result = evaluate_packed(file, dataset_name, backend_name, batch_size, data_dir=data_dir, download=download,
                             dataset_options=parse_options(dataset_pairs, "--dataset-option"), warmup=warmup,
                             repeats=repeats)
    click.echo(json.dumps(result, indent=2) if as_json else _summary(result))
