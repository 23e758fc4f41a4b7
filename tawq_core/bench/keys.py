"""Cache keys: the content hash of exactly what each piece of work depends on.

Three levels, so a change re-does only what it affects: a *model* (a trained or quantized network,
checkpointed), a *stage* (the model's accuracy, storage and energy estimates: backend-independent)
and a *cell* (one stage measured on one backend). Adding a quantizer or a backend to a preset does
not retrain fp32, because the fp32 model key does not mention the quantizer list.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tawq_core.bench.config import CACHE_FORMAT, REFERENCE, BenchConfig, digest


def _network(cfg: BenchConfig) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset, "dataset_options": cfg.dataset_options, "model": cfg.model,
        "model_options": cfg.model_options, "neuron": cfg.neuron, "neuron_options": cfg.neuron_options,
        "timesteps": cfg.timesteps, "format": CACHE_FORMAT,
    }


def fp32_spec(cfg: BenchConfig, seed: int) -> dict[str, Any]:
    return {**_network(cfg), "train": cfg.train_config(seed).to_dict()}


def model_spec(cfg: BenchConfig, seed: int, quantizer: str, mode: str) -> dict[str, Any]:
    """What determines the weights of `quantizer`'s model for `seed`."""
    if quantizer == REFERENCE:
        return fp32_spec(cfg, seed)
    quant = {"name": quantizer, "options": cfg.quantizer_options.get(quantizer, {}), "policy": cfg.policy,
             "mode": mode}
    if mode == "qat":
        base = fp32_spec(cfg, seed) if cfg.qat_init == "fp32" else _network(cfg)
        return {"base": base, "init": cfg.qat_init, "quantizer": quant,
                "train": cfg.train_config(seed, qat=True).to_dict()}
    return {"base": fp32_spec(cfg, seed), "quantizer": quant,
            "calibration_batches": cfg.measure.calibration_batches, "batch_size": cfg.train_config(seed).batch_size}


def model_key(cfg: BenchConfig, seed: int, quantizer: str, mode: str) -> str:
    return digest(model_spec(cfg, seed, quantizer, mode))


def stage_key(cfg: BenchConfig, seed: int, quantizer: str, mode: str) -> str:
    m = cfg.measure
    return digest({"model": model_spec(cfg, seed, quantizer, mode), "ops_batches": m.ops_batches,
                   "ops_batch_size": m.batch_size, "energy_model": m.energy_model})


def cell_key(cfg: BenchConfig, seed: int, quantizer: str, mode: str, backend: str) -> str:
    return digest({"stage": stage_key(cfg, seed, quantizer, mode), "backend": backend,
                   "measure": dataclasses.asdict(cfg.measure), "threads": cfg.threads})
