"""Headless plots of a finished matrix: accuracy vs energy and accuracy vs bits per weight.

Accuracy and the energy estimates do not depend on the backend, so each quantizer is one point (taken
from the first backend's row); error bars are the std over seeds when there are several.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tawq_core.bench.store import atomic_path

PLOTS = ("accuracy_vs_energy.png", "accuracy_vs_bits.png")


def _points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["quantizer"], row)
    return [r for r in seen.values() if r.get("top1_mean") is not None]


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")


def write_plots(rows: list[dict[str, Any]], out_dir: Path, title: str) -> list[Path]:
    """Write the PNGs into `out_dir`; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    points = _points(rows)
    written = []
    specs = [
        (PLOTS[0], "energy per sample (µJ, estimated)",
         [("energy_exact_j", "exact ternary-aware", "o"), ("energy_conventional_j", "conventional SOP", "s")], 1e6),
        (PLOTS[1], "bits per weight (quantized layers, packed)", [("bits_per_weight", "packed storage", "o")], 1.0),
    ]
    for filename, xlabel, series, scale in specs:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for field, label, marker in series:
            pts = [p for p in points if p.get(f"{field}_mean") is not None]
            if not pts:
                continue
            xs = [p[f"{field}_mean"] * scale for p in pts]
            ys = [p["top1_mean"] for p in pts]
            yerr = [p.get("top1_std") or 0.0 for p in pts]
            ax.errorbar(xs, ys, yerr=yerr if any(yerr) else None, fmt=marker, capsize=3, label=label,
                        fillstyle="full" if marker == "o" else "none")
            for x, y, p in zip(xs, ys, pts, strict=True):
                ax.annotate(p["quantizer"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if filename == PLOTS[1]:  # 1 to 32 bits: equal room for every doubling
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 2, 4, 8, 16, 32], labels=["1", "2", "4", "8", "16", "32"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
        path = out_dir / filename
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written
