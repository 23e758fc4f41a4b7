"""benchmarks/speed_deploy.py on a tiny net: every form timed, resident bytes and RSS recorded (no timing checks)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
import torch

import tawq_core

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
speed_deploy = pytest.importorskip("speed_deploy")


def test_tiny_net_rows_and_rate_sweep(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        options = {"num_classes": 3, "sample_shape": (2, 8, 8), "layers": (1, 1), "width": 8}
        torch.manual_seed(0)
        fp32 = tawq_core.create("model", "sew-resnet", **options).eval()
        x = speed_deploy._analog((2, 8, 8), 4, seed=1)
        gain = speed_deploy.scale_to_rate(fp32, x[:, :2])
        rates = speed_deploy._neuron_rates(fp32, x[:, :2])
        assert gain > 0 and 0.10 <= statistics.median(rates.values()) <= 0.15
        # the RSS cross-check's child process (an import of torch and tawq) is left to the benchmark itself
        row = speed_deploy.measure_net("tiny", fp32, "sew-resnet", options, x, 0, 1, tmp_path, gain, rss=False,
                                       batch_1_only=(speed_deploy.SPIKE,))
        sweep = speed_deploy.rate_sweep(0, 1, quick=True, rates=(0.1, 0.5))
    finally:
        torch.set_num_threads(threads)
    variants = row["variants"]
    assert list(variants) == [speed_deploy.FP32, speed_deploy.SPIKE, *speed_deploy.QUANTIZERS]
    for k, v in variants.items():
        assert set(v["latency_ms"]) == ({"1"} if k == speed_deploy.SPIKE else {"1", "4"}) and v["resident_bytes"] > 0
    assert set(variants[speed_deploy.SPIKE]["not_timed"]) == {"4"}
    for q in speed_deploy.QUANTIZERS:  # packed weights: below the fp32 model, built from the packed file
        assert variants[q]["resident_bytes"] < variants[speed_deploy.FP32]["resident_bytes"]
        assert variants[q]["agreement_with_fake_quant"]["max_rel_diff"] < 1e-4
        assert all(k.startswith(("cpu.", "dense.")) for k in variants[q]["kernels"].values())
    assert variants[speed_deploy.SPIKE]["agreement_with_fp32"]["max_rel_diff"] < 1e-4
    assert len(sweep["points"]) == 4 and all(p["speedup"] > 0 for p in sweep["points"])
    lines = speed_deploy.table({"rows": [row], "rate_sweep": sweep})
    assert sum(line.startswith("| tiny |") for line in lines) == len(variants) + 1  # + its share row
    assert sum("not timed (B=4)" in line for line in lines) == 1
    for share in row["deployable_share"].values():  # the spike-fed convs of the tiny net: a real part of it
        assert 0 < share["share"] < 1 and share["ceiling"] == pytest.approx(1 / (1 - share["share"]), rel=0.02)
