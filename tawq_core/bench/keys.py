"""Cache keys: the content hash of exactly what each piece of work depends on.

Three levels, so a change re-does only what it affects: a *model* (a trained or quantized network,
checkpointed), a *stage* (the model's accuracy, storage and energy estimates: backend-independent)
and a *cell* (one stage measured on one backend). Adding a quantizer or a backend to a preset does
not retrain fp32, because the fp32 model key does not mention the quantizer list.

Code is part of what work depends on: every model key holds the tawq and torch versions and the
distribution, version and source hash of each plugin that built it (`fingerprint`), so upgrading or
editing the tawq quantizer redoes the tawq rows and nothing else. Only cell keys hold the backend's
hardware identity (`Backend.describe()`) and its plugin's code: accuracy does not depend on where it
is measured, latency does. One cache serves every configuration (``<out>/cache``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tawq_core.bench import cells, fingerprint
from tawq_core.bench.config import CACHE_FORMAT, BenchConfig, digest, policy_table
from tawq_core.pipeline import QatInit
from tawq_core.plugin_api.quantizer import QuantMode


def _network(cfg: BenchConfig) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset, "dataset_options": cfg.dataset_options, "model": cfg.model,
        "model_options": cfg.model_options, "neuron": cfg.neuron, "neuron_options": cfg.neuron_options,
        "timesteps": cfg.timesteps, "format": CACHE_FORMAT, "framework": fingerprint.framework(),
        "code": {kind: fingerprint.plugin(kind, name)
                 for kind, name in (("dataset", cfg.dataset), ("model", cfg.model), ("neuron", cfg.neuron))},
    }


def fp32_spec(cfg: BenchConfig, seed: int) -> dict[str, Any]:
    return {**_network(cfg), "train": cfg.train_config(seed).to_dict()}


def model_spec(cfg: BenchConfig, seed: int, quantizer: str, mode: QuantMode | str) -> dict[str, Any]:
    """What determines the weights of `quantizer`'s model for `seed`; `mode` is the row's (`QuantMode.NONE`:
    the fp32 reference)."""
    mode = QuantMode(mode)
    if mode is QuantMode.NONE:
        return fp32_spec(cfg, seed)
    quant = {"name": quantizer, "options": cfg.quantizer_options.get(quantizer, {}),
             "policy": policy_table(cfg.policy), "mode": mode.value,
             "code": fingerprint.plugin("quantizer", quantizer) if quantizer not in cfg.mixed else
             {q: fingerprint.plugin("quantizer", q) for q in cfg.row_quantizers(quantizer)}}
    if quantizer in cfg.mixed:  # the row's per-layer quantizers decide its weights too
        quant["mixed"] = dataclasses.asdict(cfg.mixed[quantizer])
    if mode is QuantMode.QAT:
        base = fp32_spec(cfg, seed) if cfg.qat_init is QatInit.FP32 else _network(cfg)
        return {"base": base, "init": cfg.qat_init.value, "quantizer": quant,
                "train": cfg.train_config(seed, qat=True).to_dict()}
    return {"base": fp32_spec(cfg, seed), "quantizer": quant,
            "calibration_batches": cfg.measure.calibration_batches, "batch_size": cfg.train_config(seed).batch_size}


def model_key(cfg: BenchConfig, seed: int, quantizer: str, mode: QuantMode | str) -> str:
    return digest(model_spec(cfg, seed, quantizer, mode))


def stage_key(cfg: BenchConfig, seed: int, quantizer: str, mode: QuantMode | str) -> str:
    m = cfg.measure
    return digest({"model": model_spec(cfg, seed, quantizer, mode), "ops_batches": m.ops_batches,
                   "ops_batch_size": m.batch_size, "energy_model": m.energy_model})


def cell_key(cfg: BenchConfig, seed: int, quantizer: str, mode: QuantMode | str, backend: str,
             hardware: dict[str, str]) -> str:
    """`hardware`: the backend's `describe()`, so a results folder copied to other hardware re-measures."""
    return digest({"stage": stage_key(cfg, seed, quantizer, mode), "backend": backend,
                   "code": fingerprint.plugin("backend", backend), "hardware": hardware,
                   "measurement": cells.measurement_code(),  # the timing code and the deployed kernels
                   "measure": dataclasses.asdict(cfg.measure), "threads": cfg.threads})
