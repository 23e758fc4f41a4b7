"""Resume an interrupted training run from its last finished epoch.

After every epoch `train` hands the full training state to a `ResumeFile`: weights and buffers,
AdamW's moments and step counts, the learning-rate schedule, the AMP scaler, the random generators
and the epoch history. It is written atomically (temporary file, then rename) as one safetensors file
whose header holds the non-tensor parts as JSON: nothing is pickled, so loading it never runs code.
Run the same command again and training continues from the epoch after the saved one with the
same schedule, sampler order and random streams; on CPU the result equals that of an uninterrupted
run bit for bit. The file names the run it belongs to (`fingerprint`: model, data, quantizer and
training options); a different command pointed at the same folder is refused instead of silently
continuing someone else's run. A finished run deletes the file.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from tawq_core.plugin_api.errors import CheckpointError, ConfigError
from tawq_core.training.checkpoint import atomic_path, load_into

RESUME_NAME = "resume.safetensors"
META_KEY = "tawq-resume"
FORMAT_VERSION = 1


@dataclass
class TrainingState:
    """What a resumed run starts from: the next epoch, the history so far and the seconds already spent."""

    next_epoch: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


class ResumeFile:
    """The per-epoch training state of one run at `path` (``OUT/resume.safetensors`` for `tawq train`).

    `fingerprint` is any JSON-serialisable description of the run (the CLI passes the checkpoint
    record: model, options, dataset, quantizer, timesteps, training config). Only `writer`s (rank 0
    under torchrun) write; every rank reads."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], writer: bool = True):
        self.path = Path(path)
        self.fingerprint = json.loads(_canonical(fingerprint))
        self.writer = writer
        #: the last epoch on disk (0: none yet), for the Ctrl-C message
        self.saved_epoch = 0

    # -- saving ----------------------------------------------------------------------------------
    def save(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: torch.amp.GradScaler, loader_generator: torch.Generator, history: list[dict[str, Any]],
             seconds: float) -> None:
        """Record the state after `epoch` finished (atomically: an interruption keeps the previous epoch)."""
        if not self.writer:
            return
        from tawq_core.training.distributed import unwrap

        tensors = {f"model/{k}": v.detach().to("cpu", copy=True).contiguous()
                   for k, v in unwrap(model).state_dict().items() if isinstance(v, Tensor)}
        optim = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, state in optim["state"].items():
            for name, value in state.items():
                if isinstance(value, Tensor):
                    tensors[f"optim/{index}/{name}"] = value.detach().to("cpu", copy=True).contiguous()
                else:
                    scalars.setdefault(str(index), {})[name] = value
        np_state = np.random.get_state()
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/loader"] = loader_generator.get_state()
        tensors["rng/numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng/cuda/{i}"] = state
        record = {
            "format": FORMAT_VERSION, "fingerprint": self.fingerprint, "epoch": epoch, "history": history,
            "seconds": seconds, "param_groups": optim["param_groups"], "optim_scalars": scalars,
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": {"python": random.getstate(), "numpy": [np_state[0], *np_state[2:]]},
        }
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata={META_KEY: _canonical(record)})
        self.saved_epoch = epoch

    def clear(self) -> None:
        """The run finished: its final checkpoint replaces the per-epoch state."""
        if self.writer:
            self.path.unlink(missing_ok=True)

    # -- loading ---------------------------------------------------------------------------------
    def _read(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        if not self.path.is_file():
            return None
        try:
            tensors = load_file(str(self.path))
            with self.path.open("rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            record = json.loads(header["__metadata__"][META_KEY])
            epoch = record["epoch"]
            if not isinstance(epoch, int) or epoch < 1 or not isinstance(record["history"], list):
                raise ValueError("bad epoch or history")
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"resume state {self.path} is corrupt ({type(exc).__name__}); delete it to "
                                  "start the run from the beginning") from None
        if record.get("fingerprint") != self.fingerprint:
            raise ConfigError(f"{self.path} holds an unfinished run of a different command (other model, data, "
                              "quantizer or training options); re-run that command to resume it, or choose "
                              "another --out (or delete the file to start over)")
        return tensors, record

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: torch.amp.GradScaler, loader_generator: torch.Generator) -> TrainingState:
        """Load the saved state into the freshly built objects; a fresh `TrainingState` when there is none."""
        found = self._read()
        if found is None:
            return TrainingState()
        tensors, record = found
        load_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")},
                  source=f"resume state {self.path}")
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        for index, values in record["optim_scalars"].items():
            state.setdefault(int(index), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": record["param_groups"]})
        scheduler.load_state_dict(record["scheduler"])
        scaler.load_state_dict(record["scaler"])
        torch.set_rng_state(tensors["rng/torch"])
        loader_generator.set_state(tensors["rng/loader"])
        version, internal, gauss = record["rng"]["python"]
        random.setstate((version, tuple(internal), gauss))
        name, *rest = record["rng"]["numpy"]
        np.random.set_state((name, tensors["rng/numpy"].numpy().astype(np.uint32), *rest))
        cuda = sorted(k for k in tensors if k.startswith("rng/cuda/"))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
        self.saved_epoch = record["epoch"]
        return TrainingState(record["epoch"] + 1, list(record["history"]), float(record["seconds"]))
