"""The dataset interface and the time-major encoding of batches.

A dataset plugin returns `DatasetSplits`. Static samples (images, 1-D signals) are direct-encoded:
the analog sample is repeated over T. Event data already has a time axis per sample. Either way the
model receives ``[T, B, ...]``; `encode_batch` is the one place that makes that layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import Dataset

from tawq_core.plugin_api.errors import ConfigError, ShapeError


class Encoding(str, Enum):
    STATIC = "static"  # sample [C, ...]; repeated over T (direct encoding)
    TEMPORAL = "temporal"  # sample [T, C, ...]; events binned into frames, or a sequence over time


@dataclass
class DatasetSplits:
    """A train/test pair plus what a model factory needs to size itself."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    sample_shape: tuple[int, ...]  # one sample per timestep, without T: [C, ...]
    encoding: Encoding = Encoding.STATIC
    timesteps: int | None = None  # fixed by the data for TEMPORAL sets, None for STATIC
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"dataset {self.name!r}: num_classes must be >= 2, got {self.num_classes}")
        if self.encoding is Encoding.TEMPORAL and not self.timesteps:
            raise ConfigError(f"dataset {self.name!r}: temporal datasets must state their timesteps")

    def model_options(self, options: dict[str, Any], flag: str) -> dict[str, Any]:
        """`options` plus the ``num_classes`` and ``sample_shape`` a model needs for this dataset.

        Those two are facts of the data, not choices: a different value given in `options` (through
        `flag`, e.g. ``--model-option num_classes=3``) would build a model whose head or input does not
        fit, and is refused in one line; the same value is accepted."""
        facts = {"num_classes": self.num_classes, "sample_shape": tuple(self.sample_shape)}
        for key, value in facts.items():
            given = options.get(key)
            if key in options and (list(given) if isinstance(given, (list, tuple)) else given) != (
                    list(value) if isinstance(value, tuple) else value):
                raise ConfigError(f"{flag} {key}={given!r} contradicts dataset {self.name!r}, which has "
                                  f"{key.replace('_', ' ')} {value!r}; tawq sets it from the dataset, drop the "
                                  "option (or pick another dataset)")
        return {**options, **facts}


def encode_batch(x: Tensor, encoding: Encoding, timesteps: int) -> Tensor:
    """Batch-major loader output -> time-major model input ``[T, B, ...]``."""
    if encoding is Encoding.STATIC:
        return x.unsqueeze(0).expand(timesteps, *x.shape).contiguous()
    if x.dim() < 3 or x.shape[1] != timesteps:
        raise ShapeError(
            f"temporal batch must be [B, T={timesteps}, ...], got shape {tuple(x.shape)}; "
            "check --timesteps against the dataset's time bins"
        )
    return x.transpose(0, 1).contiguous()


def load_dataset(name: str, options: dict[str, Any] | None = None, *, data_dir: str | None = None,
                 download: bool = False, timesteps: int | None = None) -> DatasetSplits:
    """Build the registered dataset `name` with its `options`: the one way `tawq train` and `tawq bench` do it.

    A temporal dataset whose factory takes a ``timesteps`` option is binned into the requested T (an
    explicit ``timesteps`` in `options` wins); its T, fixed or chosen, must then match the requested T.
    """
    import inspect

    from tawq_core.plugin_api.registry import create, get_registry

    factory = get_registry().entry("dataset", name).factory
    try:
        takes_timesteps = "timesteps" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_timesteps = False
    options = dict(options or {})
    if timesteps is not None and takes_timesteps:
        options.setdefault("timesteps", timesteps)
    splits = create("dataset", name, data_dir=data_dir, download=download, **options)
    if timesteps is not None and splits.encoding is Encoding.TEMPORAL and splits.timesteps != timesteps:
        raise ConfigError(f"dataset {name!r} has {splits.timesteps} time bins per sample; "
                          f"use --timesteps {splits.timesteps} (got {timesteps})")
    return splits


class DatasetFactory(Protocol):
    """``factory(data_dir=..., download=False, **options) -> DatasetSplits``.

    File-backed datasets raise `DatasetNotFound` naming the path they looked at and how to obtain the
    files; nothing is downloaded unless ``download=True``.
    """

    def __call__(self, *, data_dir: str | None = None, download: bool = False, **options: Any) -> DatasetSplits: ...
