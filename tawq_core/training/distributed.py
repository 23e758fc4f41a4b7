"""Data-parallel training under torchrun: process group, model wrapping, sampling and reductions.

One process is the default and needs none of this. When torchrun starts several processes (it sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), `setup` joins them with the
backend's collective library (gloo on cpu, nccl on cuda, hccl on npu), `wrap_model` puts the model in
DistributedDataParallel, and `train_sampler` deals each rank its slice of every global batch.

Why the sampler is `DistributedSampler` even in one process: rank r of W takes positions r, r+W, ...
of one seeded permutation, so with a per-rank batch of B/W the W ranks' k-th batches together are
exactly positions [kB, (k+1)B) of that permutation, the same samples a single process with batch B
sees at step k. Gradients averaged by DDP over equal per-rank batches equal the single-process mean,
so a multi-process run follows the single-process trajectory up to floating-point summation order
(BatchNorm statistics are the exception: each rank normalizes over its own B/W samples).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from tawq_core.plugin_api.errors import ConfigError

#: collective library per device type, used when train() is given a plain device instead of a Backend
_DEFAULT_DIST_BACKEND = {"cpu": "gloo", "cuda": "nccl", "npu": "hccl"}


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``world_size == 1`` means plain single-process training."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def world_size() -> int:
    """Processes in this job: the live process group's size, else ``WORLD_SIZE`` (torchrun), else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def is_main_process() -> bool:
    """True on rank 0 (and in any single-process run): the one process that writes files and bars."""
    return rank() == 0


def current() -> DistContext:
    """The context of an already joined process group, or the single-process context."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_world_size(), dist.get_rank(), _env_int("LOCAL_RANK", 0), dist.get_backend())
    return DistContext()


def _dist_backend_for(device: torch.device, backend: object | None) -> str:
    name = getattr(backend, "dist_backend", None)
    if name:
        return str(name)
    return _DEFAULT_DIST_BACKEND.get(device.type, "gloo")


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    """An accelerator without an index becomes this rank's own card (torchrun's LOCAL_RANK)."""
    if device.type == "cpu" or device.index is not None:
        return device
    device = torch.device(device.type, local_rank)
    module = getattr(torch, device.type, None)
    if module is not None and hasattr(module, "set_device"):
        module.set_device(device)
    return device


def setup(device: torch.device | str, backend: object | None = None) -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (once per process) and pick this rank's device.

    `backend` is a `tawq_core.Backend` whose ``dist_backend`` names the collective library; without one
    the library follows the device type (gloo/nccl/hccl). Returns the context and the rank's device.
    """
    device = torch.device(device)
    size = world_size()
    if size <= 1:
        return DistContext(), device
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={size} but this torch build has no torch.distributed; run one process")
    local_rank = _env_int("LOCAL_RANK", 0)
    device = _rank_device(device, local_rank)
    if not dist.is_initialized():
        name = _dist_backend_for(device, backend)
        missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise ConfigError(
                f"WORLD_SIZE={size} but {', '.join(missing)} is not set; launch with torchrun "
                "(python -m torch.distributed.run --nproc_per_node N ...)"
            )
        dist.init_process_group(backend=name, init_method="env://")
        atexit.register(shutdown)
    return current(), device


def shutdown() -> None:
    """Leave the process group (registered at exit by `setup`; safe to call twice).

    The barrier first: rank 0 still writes files after training while the other ranks reach exit; tearing
    a gloo group down on one rank while another still holds it aborted a worker once in a loaded test run
    ("terminate called without an active exception"), so every rank leaves together."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when several processes train; `model` itself otherwise."""
    if not ctx.enabled:
        return model
    device_ids = [device.index] if device.type != "cpu" and device.index is not None else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (what is saved, evaluated and returned)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def per_rank_batch(global_batch: int, ctx: DistContext) -> int:
    """``batch_size`` is global: each of W ranks takes B/W, so the optimization matches one process."""
    if global_batch % ctx.world_size:
        raise ConfigError(
            f"batch_size {global_batch} is the global batch and must divide evenly over "
            f"{ctx.world_size} processes; use a multiple of {ctx.world_size}"
        )
    return global_batch // ctx.world_size


def train_sampler(dataset: Dataset, ctx: DistContext, seed: int) -> DistributedSampler:
    """Seeded shuffling (call ``set_epoch`` each epoch) that gives the same global batches at any world size."""
    return DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
    )


def shard_indices(n: int, ctx: DistContext) -> list[int]:
    """This rank's share of an evaluation set: every W-th sample, no padding, so counts add up exactly."""
    return list(range(ctx.rank, n, ctx.world_size))


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over ranks in place (no-op in one process); used for correct/total counts and losses."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats), so evaluation and saving agree."""
    if not ctx.enabled:
        return
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer, src=0)
