"""Every built-in dataset passes tawq_core.testing.check_dataset: generated ones on their data, file-backed
ones on tiny stand-in files in their real layouts, and all of them refuse absent files in one line."""

from __future__ import annotations

import pytest
from dataset_writers import write_shd

import tawq_core
from tawq_core.testing import check_dataset

GENERATED = ("digits", "mnist1d")


@pytest.mark.parametrize("name", GENERATED)
def test_generated_dataset_passes(name):
    assert not check_dataset(name).notes


@pytest.mark.parametrize("name", sorted(set(tawq_core.list_plugins("dataset")) - set(GENERATED)))
def test_file_backed_dataset_refuses_absent_files_in_one_line(name, tmp_path):
    report = check_dataset(name, data_dir=str(tmp_path))
    assert report.notes and "files absent" in report.notes[0]


def test_temporal_dataset_on_stand_in_files_honours_timesteps(tmp_path):
    for split, label in (("train", 3), ("test", 1)):
        write_shd(tmp_path / "SHD" / f"shd_{split}.h5", [([0.1, 0.2, 0.3], [7, 8, 9], label)] * 2)
    report = check_dataset("shd", data_dir=str(tmp_path), timesteps=5)
    assert not report.notes
    assert any("timesteps option sets T" in check for check in report.checks)



def test_train_and_bench_bin_a_temporal_dataset_into_the_requested_timesteps(tmp_path):
    """`load_dataset` is how `tawq train --timesteps` and `tawq bench` build datasets: one behaviour."""
    from tawq_core import ConfigError
    from tawq_core.plugin_api.data import load_dataset

    for split, label in (("train", 3), ("test", 1)):
        write_shd(tmp_path / "SHD" / f"shd_{split}.h5", [([0.1, 0.2, 0.3], [7, 8, 9], label)])
    assert load_dataset("shd", data_dir=str(tmp_path), timesteps=6).timesteps == 6
    assert load_dataset("shd", {"timesteps": 7}, data_dir=str(tmp_path)).timesteps == 7
    # an explicit dataset option wins over --timesteps, and then the two disagree: one line
    with pytest.raises(ConfigError, match=r"'shd' has 7 time bins per sample; use --timesteps 7 \(got 6\)"):
        load_dataset("shd", {"timesteps": 7}, data_dir=str(tmp_path), timesteps=6)
