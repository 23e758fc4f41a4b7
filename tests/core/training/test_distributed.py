"""Data-parallel training: 2 CPU processes (gloo, launched by torchrun) agree with one process.

Why they can agree closely: `batch_size` is global, each rank takes batch/2 from a DistributedSampler,
and the two ranks' k-th batches together are exactly the single process's k-th batch (same seeded
permutation). DDP averages the two half-batch mean gradients, which equals the full-batch mean, so
the runs differ only by floating-point summation order. The model here has no BatchNorm (whose
statistics would legitimately differ per rank) and smooth activations, so after 24 AdamW steps the
weights agree to 1e-5 and the losses to 1e-5 relative; the test-set accuracy, counted exactly across
ranks (each scores every 2nd sample, correct/total summed), must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from tawq_core import ConfigError
from tawq_core.training import distributed
from tawq_core.training.checkpoint import load_checkpoint
from tawq_core.training.progress import progress_enabled

WORKER = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from tawq_core import DatasetSplits, TrainConfig, save_checkpoint, seed_everything, train
    from tawq_core.training.checkpoint import write_json
    from tawq_core.training.distributed import is_main_process

    def blobs(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 3
        return TensorDataset(3 * torch.randn(3, 6, generator=g)[y] + 0.8 * torch.randn(n, 6, generator=g), y)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))

        def forward(self, x):
            return self.body(x).mean(0)

    out = sys.argv[1]
    splits = DatasetSplits("blobs", blobs(200, 0), blobs(101, 1), num_classes=3, sample_shape=(6,))
    seed_everything(0)
    model = Net()
    config = TrainConfig(epochs=3, batch_size=24, lr=1e-2, timesteps=2, warmup_epochs=1, grad_clip=1.0)
    result = train(model, splits, config, progress=False)
    if is_main_process():
        save_checkpoint(out + "/model.safetensors", model)
        write_json(out + "/result.json", result.to_dict())
''')


def _run(cmd: list[str], tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch built without gloo")
def test_two_gloo_processes_match_one_process(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    _run([sys.executable, "worker.py", "one"], tmp_path)
    # --standalone: a local rendezvous on a free port, so parallel test runs never collide
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "worker.py", "two"], tmp_path)

    one = json.loads((tmp_path / "one" / "result.json").read_text())
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["steps"] == two["steps"] == 3 * (200 // 24)
    assert two["test_accuracy"] == one["test_accuracy"] > 0.8
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["eval_accuracy"] == a["eval_accuracy"]
    w1, _ = load_checkpoint(tmp_path / "one" / "model.safetensors")
    w2, _ = load_checkpoint(tmp_path / "two" / "model.safetensors")
    assert set(w1) == set(w2)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=1e-5, rtol=0)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["model.safetensors", "result.json"]


def test_half_configured_environment_is_a_config_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR, MASTER_PORT is not set; launch with torchrun"):
        distributed.setup("cpu")


def test_global_batch_must_split_evenly_and_eval_shards_cover_every_sample_once():
    two = [distributed.DistContext(world_size=2, rank=r) for r in (0, 1)]
    assert distributed.per_rank_batch(24, two[0]) == 12
    with pytest.raises(ConfigError, match="multiple of 2"):
        distributed.per_rank_batch(25, two[0])
    shards = [distributed.shard_indices(101, ctx) for ctx in two]
    assert sorted(shards[0] + shards[1]) == list(range(101))


def test_progress_bars_only_on_a_terminal_and_only_on_rank_0(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert progress_enabled(True) and not progress_enabled(False)
    assert progress_enabled(None) == sys.stderr.isatty()
    monkeypatch.setenv("RANK", "1")
    assert not progress_enabled(True)
