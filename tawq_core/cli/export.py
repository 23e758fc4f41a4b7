"""`tawq export CHECKPOINT --format onnx|nir|tawq --out FILE`: write a trained model for deployment."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tawq_core.export import FORMATS


def _summary(data: dict) -> str:
    line = f"wrote {data['path']} ({data['format']}, {data['bytes']:,} bytes)"
    if data["format"] == "tawq":
        line += (f": {data['quantized_weights']:,} quantized weights at {data['bits_per_weight']:.3f} bits/weight "
                 f"({data['bits_per_weight_total']:.3f} with scales), header {data['header_bytes']:,} bytes, "
                 f"full-precision tensors {data['fp_bytes']:,} bytes")
        if data.get("bit_exact"):
            line += "; reloaded bit-exactly"
    elif data.get("max_abs_diff") is not None:
        check = "onnxruntime" if data["format"] == "onnx" else "NIR simulation"
        line += f"; {check} matches torch (max abs difference {data['max_abs_diff']:.2g})"
    return line


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Output format.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option("--batch-size", type=click.IntRange(min=1), default=2, show_default=True,
              help="Batch of the random example input used to trace and verify.")
@click.option("--no-verify", is_flag=True, help="Skip the onnxruntime / NIR / reload check.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON.")
def export(checkpoint: Path, fmt: str, out: Path, batch_size: int, no_verify: bool, as_json: bool) -> None:
    """Export a checkpoint (a `tawq train --out` folder or its .safetensors file) to ONNX, NIR or packed tawq."""
    from tawq_core.export import export as export_model
    from tawq_core.overwrite import refuse_overwrite
    from tawq_core.training.checkpoint import _model_options, _resolve, build_from_checkpoint

    refuse_overwrite(out, [checkpoint, _resolve(checkpoint)], "--out")
    model, meta = build_from_checkpoint(checkpoint)
    options = _model_options(meta)
    report = export_model(model.eval(), fmt, out, timesteps=meta.get("timesteps"),
                          sample_shape=options.get("sample_shape"), batch_size=batch_size, model_name=meta["model"],
                          model_options=options, quantizer_options=meta.get("quantizer_options") or None,
                          verify=not no_verify)
    data = report.to_dict()
    click.echo(json.dumps(data, indent=2, default=str) if as_json else _summary(data))
