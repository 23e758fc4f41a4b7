"""The bench loop: for every seed and quantizer, get the model, score it once, measure it per backend.

fp32 is trained once per seed and reused: PTQ quantizers copy it, quantize and calibrate; QAT
quantizers fine-tune a quantized copy of it (``qat_init = "fp32"``) or train from scratch with the
same data, split and seed; every model is produced by `tawq_core.pipeline`, which the bench only
caches. Each finished model, stage and cell goes to the cache atomically the moment
it is done, and results.json / matrix.* are rewritten after every cell, so an interrupted run leaves a
consistent directory and the same command resumes where it stopped. The cache (``<out>/cache``) is
shared by every run under the same --out, so a run that differs from an earlier one (one more
quantizer, another backend) reuses whatever work the two have in common (see `keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tawq_core.bench import cells, keys
from tawq_core.bench.config import BenchConfig
from tawq_core.bench.leftovers import removed_if_unused
from tawq_core.bench.provenance import provenance
from tawq_core.bench.report import RESULTS_FORMAT, write_outputs
from tawq_core.bench.store import CACHE_DIR, RunStore
from tawq_core.jit import kernel_use
from tawq_core.pipeline import Data, ModelSource, QatInit, Recipe, Runtime, evaluate_model, prepare, produce
from tawq_core.plugin_api.backend import Backend
from tawq_core.plugin_api.data import DatasetSplits, load_dataset
from tawq_core.plugin_api.errors import BackendUnavailable, CheckpointError
from tawq_core.plugin_api.plugin_boundary import plugin_failure
from tawq_core.plugin_api.quantizer import QuantMode
from tawq_core.plugin_api.registry import check_options, create, get_registry
from tawq_core.training import checkpoint, distributed

Log = Callable[[str], None]
#: What a cache entry must hold to be used; anything less (a hand-edited or foreign file) is recomputed.
MODEL_FIELDS = ("time_s", "epochs", "trained_on")
STAGE_FIELDS = ("seed", "quantizer", "mode", "top1", "train", "quantized_layers", "neurobench")
CELL_FIELDS = (*STAGE_FIELDS, "backend", "status", "latency", "memory", "energy", "hardware")


@dataclass
class BenchResult:
    run_dir: Path
    results: dict[str, Any]
    markdown: str
    computed: list[str] = field(default_factory=list)  # "seed/quantizer/backend" cells measured this run
    cached: list[str] = field(default_factory=list)  # cells taken from the cache


class Runner:
    def __init__(self, cfg: BenchConfig, out_root: Path, force: bool = False, log: Log | None = None,
                 progress: bool | None = None):
        self.cfg, self.force, self.progress = cfg, force, progress
        self._log = log
        self.run_dir = Path(out_root) / cfg.run_id
        self.store = RunStore(self.run_dir, Path(out_root) / CACHE_DIR, writer=distributed.is_main_process())
        self._check_names()
        self.modes = {q: cells.row_mode(cfg, q) for q in cfg.quantizers}
        #: the row every other is compared with, known by its mode (unquantized), not by its name
        self.reference = cells.reference_row(cfg)
        self.backends, self.unavailable = self._resolve_backends()
        self.train_backend = next(b for b in self.backends if b.name not in self.unavailable)
        self._splits: DatasetSplits | None = None
        self._models: dict[tuple[int, str], nn.Module] = {}
        self.computed: list[str] = []
        self.failed: list[str] = []  # "seed/quantizer/backend" cells whose plugin code failed
        self.cached: list[str] = []
        self.records: dict[str, dict[str, Any]] = {}
        self._hardware: dict[str, dict[str, str]] = {}

    def log(self, line: str) -> None:
        if self._log is not None and distributed.is_main_process():
            self._log(line)

    # -- set-up ----------------------------------------------------------------------------------
    def _check_names(self) -> None:
        """Unknown plugin names and option names fail before anything is loaded, trained or written."""
        registry, cfg = get_registry(), self.cfg
        for kind, names in (("dataset", [cfg.dataset]), ("model", [cfg.model]), ("neuron", [cfg.neuron]),
                            ("quantizer", cfg.plugin_quantizers),
                            ("backend", cfg.backends)):
            for name in names:
                registry.entry(kind, name)
        _check_options("dataset", cfg.dataset, {"data_dir": None, "download": False, **cfg.dataset_options})
        _check_options("model", cfg.model, {"num_classes": 2, "sample_shape": (1,), "neuron": cfg.neuron,
                                            "neuron_options": None, **cfg.model_options})

    def _resolve_backends(self) -> tuple[list[Backend], dict[str, str]]:
        backends = [create("backend", name) for name in self.cfg.backends]
        if len(backends) == 1:
            backends[0].require()  # the only backend asked for: its absence is the user's error
        unavailable = {}
        for backend in backends:
            ok, reason = backend.is_available()
            if not ok:
                unavailable[backend.name] = reason
        if len(unavailable) == len(backends):
            reasons = "; ".join(f"{k}: {v}" for k, v in unavailable.items())
            raise BackendUnavailable(f"none of the requested backends is available ({reasons})")
        return backends, unavailable

    @property
    def splits(self) -> DatasetSplits:
        """Loaded on first need: a fully cached re-run never touches the data."""
        if self._splits is None:
            cfg = self.cfg
            self.log(f"loading dataset {cfg.dataset}")
            self._splits = load_dataset(cfg.dataset, cfg.dataset_options, data_dir=cfg.data_dir,
                                        download=cfg.download, timesteps=cfg.timesteps)
        return self._splits

    @property
    def data(self) -> Data:
        return Data(self.splits, self.cfg.timesteps)

    # -- models ----------------------------------------------------------------------------------
    def model_for(self, seed: int, quantizer: str) -> tuple[nn.Module, dict[str, Any]]:
        """The (possibly quantized) model of `quantizer` for `seed`, from memory, checkpoint or the pipeline."""
        if (seed, quantizer) not in self._models:
            recipe = cells.recipe(self.cfg, self.splits, seed, quantizer)
            built = (self._post_training(recipe) if recipe.mode is QuantMode.PTQ else
                     self._trained(keys.model_key(self.cfg, seed, quantizer, recipe.mode), quantizer, recipe))
            self._models[(seed, quantizer)] = built
        return self._models[(seed, quantizer)]

    def _reference(self, seed: int) -> ModelSource:
        """The trained fp32 model of `seed`, which QAT fine-tuning, distillation and PTQ start from."""
        return lambda: self.model_for(seed, self.reference)[0]

    def _runtime(self) -> Runtime:
        return Runtime(self.train_backend.device, self.train_backend, self.progress, log=self.log)

    def _trained(self, key: str, quantizer: str, recipe: Recipe) -> tuple[nn.Module, dict[str, Any]]:
        path = self.store.checkpoint_path("models", key)
        info = None if self.force else self.store.get("models", key, required=MODEL_FIELDS)
        if info is not None and path.is_file():
            model, report = prepare(recipe, self.cfg.timesteps)  # a fresh network the checkpoint is loaded into
            try:
                state, _ = checkpoint.load_checkpoint(path)
                checkpoint.load_into(model, state, source=f"cached model {path}")
                return model.eval(), {**info, "quantize_report": cells.report_record(report)}
            except CheckpointError as exc:
                self.log(f"cached model unusable, retraining: {exc}")
        qat, tc = recipe.mode is QuantMode.QAT, recipe.train
        reference = None if recipe.mode is QuantMode.NONE else self._reference(recipe.seed)
        if reference is not None and (recipe.fine_tunes or tc.distill):
            reference()  # trained (or loaded) before this model's own log line
        how = "training" if not qat else ("fine-tuning from fp32" if recipe.init is QatInit.FP32 else
                                           "training from scratch")
        self.log(f"seed {recipe.seed} · {quantizer}: {how} ({tc.epochs} epochs) on {self.train_backend.name}")
        produced = produce(recipe, self.data, self._runtime(), reference=reference)
        result = produced.result
        assert result is not None  # fp32 and QAT models are trained
        info = {"time_s": result.train_seconds, "epochs": tc.epochs, "steps": result.steps,
                "trained_on": self.train_backend.name, "world_size": result.world_size,
                "init": recipe.init.value if qat else None, "final_train_loss": result.history[-1].train_loss}
        if self.store.writer:
            checkpoint.save_checkpoint(path, produced.model, {"model": self.cfg.model, "quantizer": quantizer,
                                                              "seed": recipe.seed, "bench_key": key})
            self.store.put("models", key, info)
        return produced.model.eval(), {**info, "quantize_report": cells.report_record(produced.report)}

    def _post_training(self, recipe: Recipe) -> tuple[nn.Module, dict[str, Any]]:
        produced = produce(recipe, self.data, self._runtime(), reference=self._reference(recipe.seed))
        info = {"time_s": produced.seconds, "epochs": 0, "trained_on": self.train_backend.name,
                "init": "fp32 (post-training, calibration only)"}
        return produced.model.eval(), {**info, "quantize_report": cells.report_record(produced.report)}

    # -- stages and cells ------------------------------------------------------------------------
    def stage(self, seed: int, quantizer: str) -> dict[str, Any]:
        """Accuracy, storage and energy estimates of one model: independent of the backend."""
        mode = self.modes[quantizer]
        key = keys.stage_key(self.cfg, seed, quantizer, mode)
        cached = None if self.force else self.store.get("stages", key, required=STAGE_FIELDS)
        if cached is not None and (cached["seed"], cached["quantizer"]) == (seed, quantizer):
            return cached
        model, info = self.model_for(seed, quantizer)
        self.log(f"seed {seed} · {quantizer}: evaluating")
        device = self.train_backend.device
        record = {
            "seed": seed, "quantizer": quantizer, "mode": mode.value, "stage_key": key,
            "quantizer_config": cells.new_quantizer(self.cfg, quantizer).config(),
            "top1": 100.0 * evaluate_model(model, self.data, device, self.cfg.train_config(seed).eval_batch_size),
            "test_samples": len(self.splits.test),
            "train": {k: v for k, v in info.items() if k != "quantize_report"},
            "quantized_layers": info["quantize_report"],
        }
        if self.store.writer:  # the rest is bookkeeping only rank 0 needs
            record["storage"] = cells.storage(model, self.cfg)
            record["ops"], record["energy"] = cells.estimates(model, self.cfg, self.splits, device)
            record["neurobench"] = cells.neurobench(model, self.cfg, self.splits, device)
            self.store.put("stages", key, record)
        return record

    def cell(self, seed: int, quantizer: str, backend: Backend, stage: dict[str, Any], prov: dict) -> None:
        label = f"{seed}/{quantizer}/{backend.name}"
        mode = self.modes[quantizer]
        key = keys.cell_key(self.cfg, seed, quantizer, mode, backend.name, self.hardware(backend))
        run = {"config_hash": self.cfg.config_hash, "run_id": self.cfg.run_id}  # this run's, even for cached cells
        base = {**stage, "backend": backend.name, "cell_key": key, **run}
        if backend.name in self.unavailable:  # never cached: the hardware may appear later
            self.records[key] = {**base, "status": "unavailable", "reason": self.unavailable[backend.name],
                                 "hardware": {"backend": backend.name}, "provenance": prov}
            return
        cached = None if self.force else self.store.get("cells", key, required=CELL_FIELDS)
        if cached is not None and (cached["seed"], cached["quantizer"], cached["backend"]) == \
                (seed, quantizer, backend.name):
            self.records[key] = {**cached, **run}
            self.cached.append(label)
            return
        model, _ = self.model_for(seed, quantizer)
        self.log(f"seed {seed} · {quantizer}: measuring on {backend.name}")
        measured = cells.measure(model, self.cfg, self.splits, backend)
        record = {**base, **measured, "status": "ok", "hardware": self.hardware(backend),
                  "provenance": {**prov, "kernels": kernel_use()}}
        record["energy"] = {**stage.get("energy", {}), **measured.get("energy", {})}
        self.store.put("cells", key, record)
        self.records[key] = record
        self.computed.append(label)

    def hardware(self, backend: Backend) -> dict[str, str]:
        """`backend.describe()`, asked once per run (it may query a driver)."""
        if backend.name not in self._hardware:
            self._hardware[backend.name] = backend.describe()
        return self._hardware[backend.name]

    def _failed(self, seed: int, quantizer: str, exc: BaseException, prov: dict) -> None:
        """Third-party plugin code failed: record the cells as failed (never cached: a fixed plugin reruns
        them) and go on with the other quantizers. Anything else is not the plugin's fault: re-raised."""
        failure = plugin_failure(exc)
        if failure is None:
            raise exc
        self.log(f"seed {seed} · {quantizer}: failed: {failure}")
        mode = self.modes[quantizer]
        for backend in self.backends:
            key = keys.cell_key(self.cfg, seed, quantizer, mode, backend.name, self.hardware(backend))
            self.records.setdefault(key, {
                "seed": seed, "quantizer": quantizer, "mode": mode.value, "backend": backend.name, "cell_key": key,
                "config_hash": self.cfg.config_hash, "run_id": self.cfg.run_id, "status": "failed",
                "reason": str(failure), "hardware": {"backend": backend.name}, "provenance": prov})
            self.failed.append(f"{seed}/{quantizer}/{backend.name}")
        self._models.pop((seed, quantizer), None)

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> BenchResult:
        """Run or resume the bench; one that fails before finishing anything leaves no empty folders."""
        if not self.store.writer:
            return self._run()
        with removed_if_unused(self.run_dir.parent, self.run_dir, self.store.cache):
            return self._run()

    def _run(self) -> BenchResult:
        cfg = self.cfg
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.store.prepare()
        self.store.write_json("config.json", {"config_hash": cfg.config_hash, "run_id": cfg.run_id,
                                              "config": cfg.hashed() | {"name": cfg.name}})
        prov = provenance({"dataset": [cfg.dataset], "model": [cfg.model], "neuron": [cfg.neuron],
                           "quantizer": list(cfg.plugin_quantizers),
                           "backend": list(cfg.backends)})
        self.log(f"bench run {cfg.run_id}: {len(cfg.seeds)} seed(s) × {len(cfg.quantizers)} quantizers × "
                 f"{len(cfg.backends)} backend(s) -> {self.run_dir}")
        try:
            for seed in cfg.seeds:
                for quantizer in cfg.quantizers:
                    try:
                        stage = self.stage(seed, quantizer)
                        if not self.store.writer:
                            continue  # other ranks only help train and evaluate
                        for backend in self.backends:
                            self.cell(seed, quantizer, backend, stage, prov)
                    except (Exception, SystemExit) as exc:  # noqa: B036 - plugin code may even sys.exit()
                        self._failed(seed, quantizer, exc, prov)
                    self.write(prov, complete=False, plots=False)
                self._models.clear()  # one seed's models at a time in memory
        except KeyboardInterrupt:
            if self.store.writer and self.records:  # results.json lists every cell finished before Ctrl-C
                self.write(prov, complete=False, plots=False)
            raise
        results, text = {}, ""
        if self.store.writer:
            results, text = self.write(prov, complete=True, plots=True)
            failed = f", {len(self.failed)} failed (plugin errors above)" if self.failed else ""
            self.log(f"{len(self.computed)} cell(s) computed, {len(self.cached)} from cache{failed}; "
                     f"results in {self.run_dir}")
        return BenchResult(self.run_dir, results, text, self.computed, self.cached)

    def write(self, prov: dict[str, Any], complete: bool, plots: bool) -> tuple[dict[str, Any], str]:
        from tawq_core.bench.notes import notes

        cfg = self.cfg
        prov = {**prov, "kernels": kernel_use()}  # which kernels ran (and why faster ones did not), so far
        results = {
            "format": RESULTS_FORMAT, "run_id": cfg.run_id, "config_hash": cfg.config_hash, "complete": complete,
            "config": {**cfg.hashed(), "name": cfg.name, "description": cfg.description},
            "provenance": prov, "records": list(self.records.values()),
            "notes": notes(cfg, list(self.records.values()), self.modes),
        }
        return write_outputs(self.run_dir, results, plots=plots)


def _check_options(kind: str, name: str, options: dict[str, Any]) -> None:
    """Option *names* against the factory's signature (values are the factory's to judge)."""
    check_options(get_registry().entry(kind, name).factory, options, f"invalid {kind}_options for {kind} {name!r}")


def run_bench(cfg: BenchConfig, out_root: Path, force: bool = False, log: Log | None = None,
              progress: bool | None = None) -> BenchResult:
    """Run (or resume) the bench described by `cfg` under ``out_root/<run id>/``."""
    return Runner(cfg, out_root, force=force, log=log, progress=progress).run()
