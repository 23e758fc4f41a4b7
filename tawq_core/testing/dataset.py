"""`check_dataset`: the dataset-factory contract, on the real files or on small stand-in files."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from tawq_core.plugin_api.data import DatasetSplits, Encoding, encode_batch
from tawq_core.plugin_api.errors import DatasetNotFound
from tawq_core.testing.subject import CheckReport, Subject, resolve

#: Checked when a temporal dataset takes a `timesteps` option: bench and `tawq train --timesteps` pass it.
OTHER_TIMESTEPS = 3


def _splits(s: Subject, report: CheckReport, **extra: Any) -> DatasetSplits | None:
    try:
        splits = s.factory(**{**s.options, **extra})
    except DatasetNotFound as exc:
        message = str(exc)
        if "\n" in message or not message:
            s.fail("DatasetNotFound must say in one line where it looked and how to get the files")
        report.notes.append(f"files absent, samples not checked (check_dataset(data_dir=stand-in files)): {message}")
        return None
    except (KeyboardInterrupt, AssertionError):
        raise
    except BaseException as exc:  # noqa: B036 - routed through Subject.call for the one-line message
        s.call("the factory", _reraise, exc)
    if not isinstance(splits, DatasetSplits):
        s.fail(f"the factory returned {type(splits).__name__}, not a tawq_core.DatasetSplits")
    return splits


def _reraise(exc: BaseException) -> None:
    raise exc


def _sample(s: Subject, splits: DatasetSplits, split: str) -> tuple[Tensor, int]:
    data = getattr(splits, split)
    size = s.call(f"len({split})", len, data)
    if size < 1:
        s.fail(f"the {split} split is empty")
    x, y = s.call(f"{split}[0]", data.__getitem__, 0)
    expected = tuple(splits.sample_shape)
    if splits.encoding is Encoding.TEMPORAL:
        expected = (splits.timesteps, *expected)
    if not isinstance(x, Tensor) or tuple(x.shape) != expected:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        s.fail(f"{split}[0] is {got}, expected {expected} ({splits.encoding.value} encoding, sample_shape "
               f"{tuple(splits.sample_shape)})")
    label = int(y)
    if not 0 <= label < splits.num_classes:
        s.fail(f"{split}[0] has label {label}, outside [0, {splits.num_classes})")
    return x, label


def _batch(s: Subject, splits: DatasetSplits, T: int) -> None:
    x, y = next(iter(DataLoader(splits.train, batch_size=2)))
    model_input = s.call("encode_batch", encode_batch, x.float(), splits.encoding, T)
    if tuple(model_input.shape) != (T, x.shape[0], *splits.sample_shape):
        s.fail(f"batches encode to {tuple(model_input.shape)}, expected [T, B, *sample_shape]")
    if not bool(torch.isfinite(model_input).all()):
        s.fail("the first batch holds non-finite values")


def check_dataset(dataset: Any, *, data_dir: str | None = None, **options: Any) -> CheckReport:
    """Check a dataset factory (registered name or callable) against the dataset contract.

    The factory is called with ``data_dir`` and ``download=False``. Where its files are absent it must
    raise a one-line `DatasetNotFound` (checked; the samples are then noted as not checked): pass
    `data_dir` pointing at small stand-in files to check the samples too.
    """
    s = resolve("dataset", dataset, type(None), options)
    report = CheckReport(s.label)
    for option in ("data_dir", "download"):
        if not s.accepts(option):
            s.fail(f"the factory takes no {option!r} keyword (the dataset contract: data_dir=, download=)")
    splits = _splits(s, report, data_dir=data_dir, download=False)
    if splits is None:
        report.passed("refuses absent files with a one-line DatasetNotFound")
        return report
    s.json("DatasetSplits.meta", splits.meta)
    first, label = _sample(s, splits, "train")
    _sample(s, splits, "test")
    T = splits.timesteps if splits.encoding is Encoding.TEMPORAL else 2
    _batch(s, splits, T)
    again = _splits(s, report, data_dir=data_dir, download=False)
    if again is not None and not torch.equal(again.train[0][0], first):
        s.fail("two calls give different first samples: datasets must be deterministic")
    report.passed("train/test samples match sample_shape, encoding and num_classes; batches encode to "
                  "[T, B, ...]; JSON meta; deterministic")
    if splits.encoding is Encoding.TEMPORAL:
        if s.accepts("timesteps"):
            other = _splits(s, report, data_dir=data_dir, download=False, timesteps=OTHER_TIMESTEPS)
            if other is not None and (other.timesteps != OTHER_TIMESTEPS
                                      or other.train[0][0].shape[0] != OTHER_TIMESTEPS):
                s.fail(f"called with timesteps={OTHER_TIMESTEPS} it gives T={other.timesteps} "
                       f"(samples {tuple(other.train[0][0].shape)})")
            report.passed("temporal: the timesteps option sets T (bench and tawq train --timesteps pass it)")
        else:
            report.notes.append(f"temporal with fixed T={splits.timesteps}: --timesteps must match it")
    return report
