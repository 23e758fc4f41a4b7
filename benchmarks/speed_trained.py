"""The trained network of part `deploy`: the default preset's SEW-ResNet on MNIST-1D, as `make bench` makes it.

fp32 is trained with the preset's ``[train]`` recipe; each QAT quantizer fine-tunes a quantized copy of it
with the ``[qat]`` recipe (``qat_init = "fp32"``), PTQ quantizers quantize it. Trained models are cached
under ``<cache>/speed-deploy/`` by a digest of dataset, model, quantizer and recipe, so the benchmark
trains them once (about 2 + 4 x 1 minutes on 2 idle cores) and then only loads them. ``quick``: one fp32
epoch and no fine-tuning (a smoke run measures the harness, not the network).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import tawq_core
from tawq_core.bench import load_preset
from tawq_core.bench.cells import build_model, model_inputs
from tawq_core.bench.config import REFERENCE, digest
from tawq_core.training.checkpoint import load_checkpoint, load_into, save_checkpoint

LABEL = "SEW-ResNet (1,1)x48, MNIST-1D, trained (default preset)"


class TrainedNet:
    def __init__(self, quick: bool, cache: Path, log: Callable[[str], None]):
        self.cfg = load_preset("default").with_overrides(epochs=1 if quick else None)
        self.quick, self.folder, self.log = quick, cache / "speed-deploy", log
        self.splits = tawq_core.create("dataset", self.cfg.dataset, **self.cfg.dataset_options)
        self.seed = self.cfg.seeds[0]
        self.options = {"num_classes": self.splits.num_classes, "sample_shape": tuple(self.splits.sample_shape),
                        "neuron": self.cfg.neuron, **self.cfg.model_options}
        self._fp32 = self._cached(REFERENCE, self._train_fp32)

    def inputs(self) -> Tensor:
        """The first test batch of the preset's measure batch size, time-major."""
        cfg = self.cfg
        (x,) = model_inputs(cfg, self.splits, self.splits.test, cfg.measure.batch_size, 1, torch.device("cpu"))
        return x

    def fp32(self) -> nn.Module:
        return copy.deepcopy(self._fp32).eval()

    def quantized(self, name: str) -> nn.Module:
        """QAT quantizers: fine-tuned from fp32 with the [qat] recipe (cached); PTQ ones: quantized fp32."""
        qat = tawq_core.create("quantizer", name).mode is tawq_core.QuantMode.QAT
        if self.quick or not qat:
            return self._quantize(self.fp32(), name).eval()
        return self._cached(name, lambda model: self._fine_tune(model, name))

    def _quantize(self, model: nn.Module, name: str) -> nn.Module:
        tawq_core.quantize(model, name, self.cfg.timesteps, policy=self.cfg.quant_policy())
        return model

    def _train_fp32(self, model: nn.Module) -> None:
        tawq_core.train(model, self.splits, self.cfg.train_config(self.seed), progress=False)

    def _fine_tune(self, model: nn.Module, name: str) -> None:
        recipe = self.cfg.train_config(self.seed, qat=True)
        teacher = self.fp32() if recipe.distill else None  # the bench distils from the fp32 model of the seed
        tawq_core.train(model, self.splits, recipe, progress=False, teacher=teacher)

    def _cached(self, name: str, train: Callable[[nn.Module], None]) -> nn.Module:
        cfg = self.cfg
        spec: dict[str, Any] = {"dataset": cfg.dataset, "model": cfg.model, "options": cfg.model_options,
                                "neuron": cfg.neuron, "timesteps": cfg.timesteps,
                                "train": cfg.train_config(self.seed).to_dict()}
        stem = "sew-resnet-mnist1d"
        if name != REFERENCE:
            spec.update(quantizer=name, qat=cfg.train_config(self.seed, qat=True).to_dict())
            stem += f"-{name}"
        path = self.folder / f"{stem}-{digest(spec)[:16]}.safetensors"
        if name == REFERENCE:
            tawq_core.seed_everything(self.seed)
            model = build_model(cfg, self.splits)
        else:
            model = self._quantize(self.fp32(), name)
        if path.is_file():
            load_into(model, load_checkpoint(path)[0], source=str(path))
            return model.eval()
        self.log(f"deploy: training {name} as the default preset does, cached as {path}")
        train(model)
        save_checkpoint(path, model, {"model": cfg.model, "quantizer": name, "model_options": self.options,
                                      "timesteps": cfg.timesteps})
        return model.eval()

    def describe(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"train": cfg.train_config(self.seed).to_dict(),
                "qat": cfg.train_config(self.seed, qat=True).to_dict(), "fine_tuned": not self.quick}
