"""mnist1d and digits: sizes, determinism, caching, stratification, and the encoded batch layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import tawq_core
from tawq_core import ConfigError, Encoding, encode_batch
from tawq_plugins.datasets import embedded


@pytest.fixture(scope="session")
def mnist1d_dir(request, tmp_path_factory):
    """A data dir holding the generated mnist1d cache, only ever read by the tests. Generating takes 10-30 s,
    so the folder lives in pytest's cache (.pytest_cache) and, like the plugin's own cache, is generated
    once per mnist1d release (the file name holds it); without the cache plugin, once per session in a
    temporary folder. The determinism test generates afresh and compares with it."""
    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("tawq-mnist1d-data") if cache is not None else tmp_path_factory.mktemp("mnist1d-data")
    tawq_core.create("dataset", "mnist1d", data_dir=str(root))
    return root


@pytest.fixture(scope="session")
def mnist1d_arrays(mnist1d_dir):
    return embedded._load_cached(embedded._mnist1d_cache_file(str(mnist1d_dir)))


def test_mnist1d_sizes_and_layout(mnist1d_dir):
    splits = tawq_core.create("dataset", "mnist1d", data_dir=str(mnist1d_dir))
    assert (len(splits.train), len(splits.test)) == (4000, 10_000)  # 0.01 pp per test sample
    assert splits.num_classes == 10 and splits.sample_shape == (1, 40)
    assert splits.encoding is Encoding.STATIC and splits.timesteps is None
    x, y = splits.train[0]
    assert x.shape == (1, 40) and x.dtype == torch.float32 and isinstance(y, int)
    labels = set(splits.train.targets) | set(splits.test.targets)
    assert labels == set(range(10))
    batch, _ = next(iter(DataLoader(splits.test, batch_size=8)))
    assert encode_batch(batch, splits.encoding, 4).shape == (4, 8, 1, 40)


def test_mnist1d_validation_split_is_a_separate_heldout_draw(mnist1d_dir):
    val = tawq_core.create("dataset", "mnist1d", data_dir=str(mnist1d_dir), heldout="validation")
    test = tawq_core.create("dataset", "mnist1d", data_dir=str(mnist1d_dir))
    assert len(val.test) == 10_000 and val.meta["heldout"] == "validation"
    assert torch.equal(val.train.x, test.train.x)  # only the held-out split changes
    assert not torch.equal(val.test.x[:100], test.test.x[:100])
    assert test.test.targets.count(0) == val.test.targets.count(0) == 1000  # 1,000 per class


def test_mnist1d_unknown_heldout_is_one_line_error(mnist1d_dir):
    with pytest.raises(ConfigError, match="heldout must be one of test, validation"):
        tawq_core.create("dataset", "mnist1d", data_dir=str(mnist1d_dir), heldout="train")


def test_mnist1d_is_standardized_as_generated(mnist1d_arrays):
    for held in (mnist1d_arrays["x_test"], mnist1d_arrays["x_val"]):  # each make_dataset call standardizes itself
        assert abs(held.mean()) < 1e-3 and abs(held.std() - 1) < 1e-3
    assert abs(mnist1d_arrays["x"].mean()) < 0.05 and abs(mnist1d_arrays["x"].std() - 1) < 0.05  # 4,000 of 5,000


@pytest.mark.slow  # a second full generation of the 24,000 samples
def test_mnist1d_generation_is_deterministic_and_leaves_global_rngs_alone(mnist1d_arrays):
    np.random.seed(123)
    expected_next = np.random.get_state()[1].copy()
    again = embedded._generate_mnist1d()
    assert np.array_equal(np.random.get_state()[1], expected_next)
    for key, value in mnist1d_arrays.items():
        assert np.array_equal(again[key], value), key


def test_mnist1d_second_load_comes_from_the_cache(mnist1d_dir, monkeypatch):
    def fail():
        raise AssertionError("generated again although a cache exists")

    monkeypatch.setattr(embedded, "_generate_mnist1d", fail)
    splits = tawq_core.create("dataset", "mnist1d", data_dir=str(mnist1d_dir))
    assert len(splits.train) == 4000


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path, mnist1d_arrays, monkeypatch):
    calls = []
    monkeypatch.setattr(embedded, "_generate_mnist1d", lambda: calls.append(1) or dict(mnist1d_arrays))
    path = embedded._mnist1d_cache_file(str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz file")
    splits = tawq_core.create("dataset", "mnist1d", data_dir=str(tmp_path))
    assert calls == [1] and len(splits.test) == 10_000
    assert embedded._load_cached(path) is not None
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_mnist1d_cache_dir_env(tmp_path, mnist1d_arrays, monkeypatch):
    monkeypatch.setenv("TAWQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "_generate_mnist1d", lambda: dict(mnist1d_arrays))
    splits = tawq_core.create("dataset", "mnist1d")
    assert splits.meta["cache"].startswith(str(tmp_path / "cache" / "mnist1d"))
    assert (tmp_path / "cache" / "mnist1d").is_dir()


def test_digits_split_is_fixed_and_stratified():
    splits = tawq_core.create("dataset", "digits")
    assert (len(splits.train), len(splits.test)) == (1347, 450)
    assert splits.sample_shape == (1, 8, 8) and splits.num_classes == 10
    x, y = splits.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= y < 10
    assert float(splits.train.x.min()) == 0.0 and float(splits.train.x.max()) == 1.0
    train_counts = np.bincount(splits.train.targets, minlength=10)
    test_counts = np.bincount(splits.test.targets, minlength=10)
    totals = train_counts + test_counts
    assert totals.sum() == 1797
    assert np.all(np.abs(test_counts - 0.25 * totals) <= 1)  # stratified: every class ~25 % in test
    again = tawq_core.create("dataset", "digits")
    assert torch.equal(again.test.x, splits.test.x) and again.test.targets == splits.test.targets


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="digits"):
        tawq_core.create("dataset", "digits", size=16)
