"""What a bench run is: one validated, hashable `BenchConfig` built from a preset and CLI flags.

A preset is a TOML file whose top-level keys are exactly the fields of `BenchConfig` (tables for the
option dicts). Everything that can change a result goes into `config_hash`, which names the run
directory and keys the cache, so the same command resumes and a changed command starts afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tawq_core.nn.quantization import QuantPolicy
from tawq_core.pipeline import Calibration, QatInit
from tawq_core.plugin_api.errors import ConfigError
from tawq_core.training.loop import TrainConfig
from tawq_core.validators import (
    check_bool,
    check_choice,
    check_int_at_least,
    check_name,
    check_names,
    check_positive_number,
    check_table,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: Bumped when the meaning of cached cells changes, so old caches are not reused by mistake.
CACHE_FORMAT = 1
#: The quantizer of the reference row every comparison is made against (its mode is `QuantMode.NONE`).
REFERENCE = "fp32"
#: Fields that choose where data lives, not what is computed: left out of the hash.
UNHASHED = ("name", "description", "data_dir", "download")


@dataclass(frozen=True)
class MeasureConfig:
    """How latency, energy and operation counts are measured (all part of the hash)."""

    batch_size: int = 64  # samples per timed forward pass
    warmup: int = 3  # untimed passes before timing
    repeats: int = 20  # timed passes; median and p90 are reported
    energy_seconds: float = 1.0  # minimum metered duration for the measured-energy column
    ops_batches: int = 2  # test batches over which firing rates and SOPs are counted
    calibration_batches: int = Calibration.batches  # training batches shown to PTQ calibration
    energy_model: str = "45nm-fp32"  # per-operation energies of the estimates (tawq_core/measure/energy_models.toml)

    def __post_init__(self) -> None:
        from tawq_core.measure.energy import get_energy_model

        for name in ("batch_size", "repeats", "ops_batches", "calibration_batches"):
            check_int_at_least(f"measure.{name}", getattr(self, name))
        check_int_at_least("measure.warmup", self.warmup, 0)
        object.__setattr__(self, "energy_seconds", check_positive_number("measure.energy_seconds",
                                                                         self.energy_seconds))
        get_energy_model(check_name("measure.energy_model", self.energy_model))


@dataclass(frozen=True)
class BenchConfig:
    """One bench run. Invalid values raise `ConfigError` on construction, with one-line messages."""

    dataset: str
    model: str
    timesteps: int
    quantizers: tuple[str, ...]
    name: str = "custom"
    description: str = ""
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    neuron: str = "lif"
    neuron_options: dict[str, Any] = field(default_factory=dict)
    quantizer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: which layers every quantizer swaps; a TOML table (`QuantPolicy`'s fields) is parsed into one here
    policy: QuantPolicy = field(default_factory=QuantPolicy)
    #: mixed-precision rows, each named in `quantizers`: it quantizes like `policy` with its base quantizer,
    #: except the layers its globs match (``[mixed.<row>] quantizer = "tawq", layers = {glob = quantizer}``)
    mixed: dict[str, MixedRow] = field(default_factory=dict)
    backends: tuple[str, ...] = ("cpu",)
    seeds: tuple[int, ...] = (0,)
    train: dict[str, Any] = field(default_factory=dict)
    qat_init: QatInit = QatInit.FP32
    qat: dict[str, Any] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    #: torch CPU threads for the whole run (None: torch's default). Tiny SNNs often run faster on one
    #: thread than on several contending ones; the number is recorded with every result.
    threads: int | None = None
    data_dir: str | None = None
    download: bool = False

    def __post_init__(self) -> None:
        s = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen dataclass
        for name in ("dataset", "model", "neuron", "name"):
            s(name, check_name(name, getattr(self, name)))
        if not isinstance(self.description, str):
            raise ConfigError(f"description must be a string, got {self.description!r}")
        check_int_at_least("timesteps", self.timesteps)
        quantizers = check_names("quantizers", self.quantizers)
        # fp32 is the reference row of every comparison: always present, always first.
        s("quantizers", (REFERENCE, *(q for q in quantizers if q != REFERENCE)))
        s("backends", check_names("backends", self.backends))
        seeds = self.seeds
        if isinstance(seeds, str):
            seeds = [part for part in seeds.split(",") if part.strip()]
            try:
                seeds = [int(part) for part in seeds]
            except ValueError:
                raise ConfigError(f"seeds must be integers like 0,1,2, got {self.seeds!r}") from None
        if not isinstance(seeds, (list, tuple)) or not seeds:
            raise ConfigError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        seeds = tuple(check_int_at_least("seeds", v, 0) for v in seeds)
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds lists a seed twice: {seeds}")
        s("seeds", seeds)
        for name in ("dataset_options", "model_options", "neuron_options", "train", "qat"):
            s(name, check_table(name, getattr(self, name)))
        policy = self.policy if isinstance(self.policy, QuantPolicy) else check_table("policy", self.policy)
        options = check_table("quantizer_options", self.quantizer_options)
        for qname, qopts in options.items():
            if qname not in self.quantizers:
                raise ConfigError(
                    f"quantizer_options.{qname} names a quantizer that is not benchmarked "
                    f"({', '.join(self.quantizers)}); remove it or add {qname!r} to quantizers"
                )
            options[qname] = check_table(f"quantizer_options.{qname}", qopts)
        s("quantizer_options", options)
        s("mixed", {row: MixedRow.parse(row, spec, self.quantizers)
                    for row, spec in check_table("mixed", self.mixed).items()})
        s("qat_init", check_choice("qat_init", self.qat_init, QatInit))
        for section in ("train", "qat"):
            owned = sorted({"seed", "timesteps"} & set(getattr(self, section)))
            if owned:
                raise ConfigError(f"{section}.{owned[0]} is set by the bench itself; use the top-level "
                                  f"{'seeds' if owned[0] == 'seed' else 'timesteps'} instead")
        if self.train_config(self.seeds[0]).distill:  # validates both recipes now, not after fp32 training
            raise ConfigError("train.distill: the fp32 reference has no teacher; distill belongs in [qat] "
                              "(QAT rows distill from the fp32 model of the same seed)")
        s("policy", _policy(policy))
        for row in self.mixed:
            self.quant_policy(row)
        self.train_config(self.seeds[0], qat=True)
        if isinstance(self.measure, Mapping):
            s("measure", _build(MeasureConfig, self.measure, "measure"))
        elif not isinstance(self.measure, MeasureConfig):
            raise ConfigError(f"measure must be a table, got {self.measure!r}")
        if self.threads is not None:
            check_int_at_least("threads", self.threads)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir must be a path string, got {self.data_dir!r}")
        check_bool("download", self.download)

    def train_config(self, seed: int, qat: bool = False) -> TrainConfig:
        """The training recipe for one seed; QAT runs apply the ``qat`` overrides on top of ``train``.

        Per-epoch evaluation is off unless asked for: the bench scores the final model once.
        """
        values = {"eval_every": 0, **self.train, **(self.qat if qat else {}), "seed": seed,
                  "timesteps": self.timesteps}
        try:
            return TrainConfig.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{'qat' if qat else 'train'}: {exc}") from None

    def quant_policy(self, row: str | None = None) -> QuantPolicy:
        """Which layers a row's quantizer swaps (default: all conv/linear but the stem and the head); for a
        mixed row, `policy` with the row's per-layer quantizers."""
        if row not in self.mixed:
            return self.policy
        if self.policy.layer_quantizers:
            raise ConfigError(f"mixed.{row}: policy.layer_quantizers is set too; use one of the two")
        return dataclasses.replace(self.policy, layer_quantizers=self.mixed[row].layers)

    @property
    def plugin_quantizers(self) -> tuple[str, ...]:
        """Every registered quantizer the rows use (mixed rows contribute their base and per-layer ones)."""
        return tuple(dict.fromkeys(q for row in self.quantizers for q in self.row_quantizers(row)))

    def row_quantizers(self, row: str) -> tuple[str, ...]:
        """The registered quantizers a row uses: its own name, or a mixed row's base then its per-layer ones."""
        if row not in self.mixed:
            return (row,)
        spec = self.mixed[row]
        return tuple(dict.fromkeys([spec.quantizer, *spec.layers.values()]))

    # -- identity ------------------------------------------------------------------------------
    def hashed(self) -> dict[str, Any]:
        """Everything that can change a result, as plain JSON-able data."""
        data = dataclasses.asdict(self)
        for key in UNHASHED:
            data.pop(key)
        data["policy"], data["qat_init"] = policy_table(self.policy), self.qat_init.value
        # resolved recipes, so a default changed in TrainConfig changes the hash too
        data["train"] = {k: v for k, v in self.train_config(0).to_dict().items() if k != "seed"}
        data["qat"] = {k: v for k, v in self.train_config(0, qat=True).to_dict().items() if k != "seed"}
        data["cache_format"] = CACHE_FORMAT
        return data

    @property
    def config_hash(self) -> str:
        return digest(self.hashed())

    @property
    def run_id(self) -> str:
        """Directory name under --out: preset name plus hash, so the same command finds its run."""
        return f"{self.name}-{self.config_hash[:12]}"

    def with_overrides(self, **overrides: Any) -> BenchConfig:
        """A copy with CLI flags applied; ``None`` means "flag not given"."""
        given = {k: v for k, v in overrides.items() if v is not None}
        epochs = given.pop("epochs", None)
        batch_size = given.pop("batch_size", None)
        train, qat = dict(self.train), dict(self.qat)
        if epochs is not None:  # --epochs sets fp32 and QAT training alike
            train["epochs"] = qat["epochs"] = epochs
        if batch_size is not None:
            train["batch_size"] = batch_size
        if "quantizers" in given:  # options of quantizers the flag leaves out would otherwise be an error
            chosen = check_names("quantizers", given["quantizers"])
            given.setdefault("quantizer_options", {q: o for q, o in self.quantizer_options.items() if q in chosen})
            given.setdefault("mixed", {r: m for r, m in self.mixed.items() if r in chosen})
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown bench options: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, train=train, qat=qat, **given)


@dataclass(frozen=True)
class MixedRow:
    """One ``[mixed.<row>]`` table: the row's base quantizer and ``{glob: quantizer}`` for its other layers."""

    quantizer: str
    layers: dict[str, str]

    @classmethod
    def parse(cls, row: str, spec: Any, rows: tuple[str, ...]) -> MixedRow:
        """Validate ``quantizer = "tawq"`` and ``layers = {glob = quantizer}`` (a `MixedRow` passes through)."""
        if isinstance(spec, MixedRow):
            spec = dataclasses.asdict(spec)
        spec = check_table(f"mixed.{row}", spec)
        if row not in rows or row == REFERENCE:
            raise ConfigError(f"mixed.{row} defines a row that quantizers does not list ({', '.join(rows)}); "
                              f"add {row!r} to quantizers or remove the table")
        if set(spec) != {"quantizer", "layers"}:
            raise ConfigError(f"mixed.{row} needs exactly the keys quantizer and layers, got {sorted(spec)}; "
                              "e.g. quantizer = \"tawq\", layers = { \"blocks.0.*\" = \"ptq8\" }")
        layers = check_table(f"mixed.{row}.layers", spec["layers"])
        if not layers:
            raise ConfigError(f"mixed.{row}.layers is empty; name at least one glob = quantizer")
        return cls(check_name(f"mixed.{row}.quantizer", spec["quantizer"]),
                   {check_name(f"mixed.{row}.layers glob", g): check_name(f"mixed.{row}.layers.{g}", q)
                    for g, q in layers.items()})


def _policy(policy: QuantPolicy | dict[str, Any]) -> QuantPolicy:
    """A preset's ``[policy]`` table as a `QuantPolicy` (one already parsed passes through)."""
    if isinstance(policy, QuantPolicy):
        return policy
    try:
        return QuantPolicy(**policy)
    except TypeError as exc:
        raise ConfigError(f"policy: {exc}; known keys: skip_roles, unmarked, include, exclude, "
                          "layer_quantizers") from None


def policy_table(policy: QuantPolicy) -> dict[str, Any]:
    """`policy` as the ``[policy]`` table that gives it, its defaults left out (so a preset that sets none
    hashes as ``{}``, and one that spells out a default hashes like one that does not)."""
    default, table = QuantPolicy(), {}
    if policy.skip_roles != default.skip_roles:
        table["skip_roles"] = sorted(role.value for role in policy.skip_roles)
    if policy.unmarked != default.unmarked:
        table["unmarked"] = policy.unmarked.value
    for name in ("include", "exclude"):
        if getattr(policy, name):
            table[name] = list(getattr(policy, name))
    if policy.layer_quantizers:
        table["layer_quantizers"] = {glob: q if isinstance(q, str) else q.name for glob, q in policy.layer_quantizers}
    return table


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace, tuples as lists: equal configs give byte-equal JSON."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def digest(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{where}: {exc}") from None


def from_mapping(data: Mapping[str, Any], where: str = "preset") -> BenchConfig:
    return _build(BenchConfig, data, where)


def preset_names() -> list[str]:
    """The presets shipped in the `tawq_presets` package."""
    root = resources.files("tawq_presets")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str) -> BenchConfig:
    """A shipped preset by name, or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset file {str(path)!r} does not exist; check the path, or name a shipped "
                              f"preset: {', '.join(preset_names())}")
        text, where, default_name = path.read_bytes(), str(path), path.stem
    else:
        resource = resources.files("tawq_presets") / f"{name_or_path}.toml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown preset {name_or_path!r}; shipped presets: {', '.join(preset_names())} "
                "(or pass a .toml file path)"
            )
        text, where, default_name = resource.read_bytes(), f"preset {name_or_path!r}", name_or_path
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not valid TOML ({exc}); fix the syntax there "
                          "(https://toml.io, or start from a shipped preset in benchmarks/presets)") from None
    data.setdefault("name", default_name)
    return from_mapping(data, where)
