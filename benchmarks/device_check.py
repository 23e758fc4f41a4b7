"""Check the measurement backends on this machine: run their tests, then time/meter one small conv SNN.

    python benchmarks/device_check.py --json device_check.json

Runs ``pytest tests/backends`` (skip with --no-tests), then for every requested backend (default cpu
and cuda) measures a small inline conv SNN (stem conv, two LIF conv stages, linear head; T=4) in
fp32 and with the `tawq` quantizer: latency (median/p90 of device-timed batches), peak memory increase,
measured energy per sample where a meter exists, and estimated energy per sample in both SOP
conventions. Unavailable backends and meters are reported with their reasons. Prints a table and,
with --json, writes everything to that path. Exit status 1 when the tests fail or a row errors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import tawq_core
from tawq_core import count_ops, create, estimate_energy, mark, measure_energy, measure_latency, quantize

ROOT = Path(__file__).resolve().parents[1]


class SmallConvSNN(nn.Module):
    """Stem conv (analog input) -> LIF -> conv -> LIF -> pool -> conv -> LIF -> pool -> linear head."""

    def __init__(self, channels: int = 32, classes: int = 10):
        super().__init__()
        self.stem = mark(nn.Conv2d(3, channels, 3, padding=1, bias=False), "stem")
        self.bn0 = nn.BatchNorm2d(channels)
        self.lif0 = create("neuron", "lif")
        self.conv1 = nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.lif1 = create("neuron", "lif")
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.lif2 = create("neuron", "lif")
        self.head = mark(nn.Linear(2 * channels, classes), "head")
        for bn in (self.bn0, self.bn1, self.bn2):  # untrained: a BN gain makes 10-30% of neurons fire,
            nn.init.constant_(bn.weight, 6.0)  # so the spike-driven operations are not all zero

    def _stage(self, conv: nn.Module, bn: nn.Module, lif: nn.Module, x: Tensor, pool: bool) -> Tensor:
        T, B = x.shape[:2]
        y = bn(conv(x.flatten(0, 1)))
        y = nn.functional.max_pool2d(y, 2) if pool else y
        return lif(y.reshape(T, B, *y.shape[1:]))

    def forward(self, x: Tensor) -> Tensor:  # [T, B, 3, H, W] -> [B, classes]
        x = self._stage(self.stem, self.bn0, self.lif0, x, pool=False)
        x = self._stage(self.conv1, self.bn1, self.lif1, x, pool=True)
        x = self._stage(self.conv2, self.bn2, self.lif2, x, pool=True)
        return self.head(x.mean(dim=(3, 4))).mean(0)


def run_backend_tests() -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/backends"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"returncode": done.returncode, "summary": lines[-1] if lines else done.stderr.strip()[-300:],
            "seconds": round(time.perf_counter() - start, 1), "output_tail": "\n".join(lines[-30:])}


def measure_row(backend: Any, label: str, model: nn.Module, x: Tensor, repeats: int,
                energy_seconds: float | None) -> dict[str, Any]:
    model = model.to(backend.device).eval()
    x = x.to(backend.device)
    batch = x.shape[1]

    def step() -> None:
        with torch.no_grad():
            model(x)

    latency = measure_latency(backend, step, warmup=3, repeats=repeats)
    with backend.peak_memory() as memory:
        step()
    energy = measure_energy(backend, step, min_seconds=energy_seconds)
    ops = count_ops(model, x)
    estimate = estimate_energy(ops, "45nm-fp32")
    per_sample = None if energy.value is None else energy.value / batch
    return {
        "model": label, "batch": batch, "timesteps": x.shape[0],
        "latency": latency.to_dict(), "memory": memory.result.to_dict(),
        "energy_measured_per_batch": energy.to_dict(), "energy_measured_per_sample_j": per_sample,
        "energy_estimate_per_sample": {k: estimate[k].to_dict() for k in ("conventional", "exact")},
        "firing_rate": ops.firing_rate,
        "ops_per_sample": {"conventional_ac": ops.conventional_ac, "conventional_mac": ops.conventional_mac,
                           "exact_ac": ops.exact_ac, "exact_mac": ops.exact_mac},
    }


def check_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    backend = create("backend", name)
    ok, reason = backend.is_available()
    entry: dict[str, Any] = {"available": ok, "reason": reason, "describe": backend.describe(), "rows": []}
    if not ok:
        return entry
    entry["energy_meter"] = dict(zip(("available", "reason"), backend.energy_availability(), strict=True))
    torch.manual_seed(0)
    x = torch.rand(args.timesteps, args.batch, 3, args.size, args.size)
    for label in ("fp32", "tawq"):
        torch.manual_seed(0)
        model = SmallConvSNN(args.channels)
        if label != "fp32":
            quantize(model, label, args.timesteps)
        try:
            entry["rows"].append(measure_row(backend, label, model, x, args.repeats, args.energy_seconds))
        except Exception as exc:  # one failing row must not lose the others on a rented GPU
            entry["rows"].append({"model": label, "error": f"{type(exc).__name__}: {exc}",
                                  "traceback": traceback.format_exc()})
    return entry


def _fmt(value: float | None, scale: float, unit: str) -> str:
    return "n/a" if value is None else f"{value * scale:.4g} {unit}"


def print_table(report: dict[str, Any]) -> None:
    header = ("backend", "model", "median", "p90", "peak mem increase", "E meas/sample", "E conv/sample",
              "E exact/sample")
    table = [header]
    notes = []
    for name, entry in report["backends"].items():
        if not entry["available"]:
            table.append((name, "-", "unavailable", "", "", "", "", ""))
            notes.append(f"{name}: {entry['reason']}")
            continue
        for row in entry["rows"]:
            if "error" in row:
                table.append((name, row["model"], "ERROR", "", "", "", "", ""))
                notes.append(f"{name}/{row['model']}: {row['error']}")
                continue
            est = row["energy_estimate_per_sample"]
            latency = row["latency"]
            table.append((
                name, row["model"], _fmt(latency["median_s"], 1e3, "ms"), _fmt(latency["p90_s"], 1e3, "ms"),
                _fmt(row["memory"]["value"], 2**-20, "MiB"), _fmt(row["energy_measured_per_sample_j"], 1e3, "mJ"),
                _fmt(est["conventional"]["value"], 1e3, "mJ"), _fmt(est["exact"]["value"], 1e3, "mJ"),
            ))
            for key in ("memory", "energy_measured_per_batch"):
                notes.append(f"{name}/{row['model']} {key}: {row[key]['method']}")
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for note in notes:
        print(f"  - {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the full report to this path")
    parser.add_argument("--backends", default="cpu,cuda", help="comma-separated backend names")
    parser.add_argument("--no-tests", action="store_true", help="skip pytest tests/backends")
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--energy-seconds", type=float, default=None,
                        help="minimum metered window (default: each backend's own minimum)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"tawq": tawq_core.__version__, "torch": torch.__version__,
                              "tests": None if args.no_tests else run_backend_tests(), "backends": {}}
    if report["tests"] is not None:
        print(f"pytest tests/backends: {report['tests']['summary']} ({report['tests']['seconds']} s)")
    for name in [n.strip() for n in args.backends.split(",") if n.strip()]:
        report["backends"][name] = check_backend(name, args)
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    failed_tests = report["tests"] is not None and report["tests"]["returncode"] != 0
    errors = any("error" in row for entry in report["backends"].values() for row in entry["rows"])
    return 1 if failed_tests or errors else 0


if __name__ == "__main__":
    sys.exit(main())
