"""cifar10, cifar100 (binary records) and imagenet (class folders): layouts, decoding, errors."""

from __future__ import annotations

import pickle
import urllib.error

import numpy as np
import pytest
import tonic.download_utils
import torch
from dataset_writers import write_cifar_bin, write_image
from torch.utils.data import DataLoader

import tawq_core
from tawq_core import DatasetNotFound, Encoding


def _column_images(n: int) -> np.ndarray:
    """Images whose pixel value is 1 + column index in every channel and row: crops/flips are visible."""
    return np.broadcast_to(np.arange(1, 33, dtype=np.uint8), (n, 3, 32, 32)).copy()


def _cifar10_tree(root, per_file: int = 3):
    folder = root / "cifar-10-batches-bin"
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        labels = [((i * per_file + j) % 10,) for j in range(per_file)]
        write_cifar_bin(folder / name, labels, _column_images(per_file))
    return folder


def test_cifar10_decodes_records(tmp_path):
    _cifar10_tree(tmp_path)
    splits = tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path), normalize=False, augment=False)
    assert (len(splits.train), len(splits.test)) == (15, 3)
    assert splits.sample_shape == (3, 32, 32) and splits.encoding is Encoding.STATIC
    assert splits.train.targets == [j % 10 for j in range(15)]
    x, label = splits.train[7]
    assert label == 7 and x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[1, 4], torch.arange(1, 33) / 255.0)
    assert splits.train[-1][1] == 14 % 10
    with pytest.raises(IndexError):
        splits.train[15]
    batch, labels = next(iter(DataLoader(splits.test, batch_size=3)))
    assert batch.shape == (3, 3, 32, 32) and labels.tolist() == [5, 6, 7]


def test_cifar10_normalization_resize_and_pickling(tmp_path):
    _cifar10_tree(tmp_path)
    splits = tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path), size=16, augment=False)
    x, _ = splits.test[0]
    assert x.shape == (3, 16, 16) and splits.sample_shape == (3, 16, 16)
    assert x.min() < 0  # mean-subtracted
    clone = pickle.loads(pickle.dumps(splits.test))
    assert torch.equal(clone[0][0], x)


def test_cifar10_train_augmentation_is_a_shifted_or_flipped_crop(tmp_path):
    _cifar10_tree(tmp_path)
    splits = tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path), normalize=False)
    torch.manual_seed(0)
    rows = [(splits.train[0][0][0, 16] * 255).round().long() for _ in range(20)]
    assert any(not torch.equal(r, torch.arange(1, 33)) for r in rows)
    for row in rows:
        values = row[row > 0]  # zero padding excluded
        steps = set(torch.diff(values).tolist())
        assert steps in ({1}, {-1}) and len(values) >= 28
    assert not splits.test.transform.augment


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    write_cifar_bin(folder / "train.bin", [(3, 42), (19, 99)], _column_images(2))
    write_cifar_bin(folder / "test.bin", [(0, 7)], _column_images(1))
    fine = tawq_core.create("dataset", "cifar100", data_dir=str(tmp_path))
    coarse = tawq_core.create("dataset", "cifar100", data_dir=str(tmp_path), labels="coarse")
    assert fine.num_classes == 100 and fine.train.targets == [42, 99] and fine.test[0][1] == 7
    assert coarse.num_classes == 20 and coarse.train.targets == [3, 19]
    with pytest.raises(tawq_core.ConfigError, match="fine"):
        tawq_core.create("dataset", "cifar100", data_dir=str(tmp_path), labels="both")


def test_cifar_short_or_wrong_files_name_the_file(tmp_path):
    folder = _cifar10_tree(tmp_path)
    short = folder / "data_batch_3.bin"
    short.write_bytes(short.read_bytes()[:-100])
    with pytest.raises(DatasetNotFound, match=r"cannot read .*data_batch_3\.bin .*3073-byte records"):
        tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path))
    write_cifar_bin(short, [(12,)], _column_images(1))
    with pytest.raises(DatasetNotFound, match=r"data_batch_3\.bin \(label 12 is out of range"):
        tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path))


def test_cifar_missing_files_and_failed_download(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFound, match=r"cifar-10-batches-bin/data_batch_1\.bin is missing") as info:
        tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path))
    assert "cifar-10-binary.tar.gz" in str(info.value) and "download=True" in str(info.value)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tonic.download_utils, "download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFound, match=r"downloading https://www\.cs\.toronto\.edu/.* failed \(URLError"):
        tawq_core.create("dataset", "cifar100", data_dir=str(tmp_path), download=True)


def _imagenet_tree(root):
    folder = root / "imagenet"
    for split in ("train", "val"):
        for label, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
            for k in range(2):
                write_image(folder / split / wnid / f"{wnid}_{k}.JPEG",
                            np.full((30, 40, 3), 40 * label + k, dtype=np.uint8))
    return folder


def test_imagenet_folders_decode_lazily(tmp_path):
    folder = _imagenet_tree(tmp_path)
    splits = tawq_core.create("dataset", "imagenet", data_dir=str(tmp_path), size=16, normalize=False)
    assert splits.num_classes == 3 and splits.sample_shape == (3, 16, 16)
    assert (len(splits.train), len(splits.test)) == (6, 6)
    assert splits.meta["classes"] == ["n01440764", "n01443537", "n01484850"]
    x, label = splits.test[3]
    assert label == 1 and x.shape == (3, 16, 16)
    assert torch.allclose(x, torch.full_like(x, 41 / 255), atol=1e-6)
    x_train, label_train = splits.train[5]
    assert label_train == 2 and x_train.shape == (3, 16, 16)
    (folder / "val" / "n01443537" / "n01443537_1.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(DatasetNotFound, match=r"cannot read .*n01443537_1\.JPEG"):
        splits.test[3]


def test_imagenet_flat_val_or_missing_tree_explains_the_layout(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"imagenet/train is missing.*cannot be downloaded"):
        tawq_core.create("dataset", "imagenet", data_dir=str(tmp_path))
    folder = _imagenet_tree(tmp_path)
    for wnid_dir in (folder / "val").iterdir():
        for image in wnid_dir.iterdir():
            image.rename(folder / "val" / image.name)
        wnid_dir.rmdir()
    with pytest.raises(DatasetNotFound, match=r"must hold class folders"):
        tawq_core.create("dataset", "imagenet", data_dir=str(tmp_path))


@pytest.mark.parametrize("options", [{"normalize": "no"}, {"augment": 1}, {"size": 0}, {"size": "32"}])
def test_bad_options_are_config_errors(tmp_path, options):
    _cifar10_tree(tmp_path)
    with pytest.raises(tawq_core.ConfigError, match="cifar10"):
        tawq_core.create("dataset", "cifar10", data_dir=str(tmp_path), **options)
