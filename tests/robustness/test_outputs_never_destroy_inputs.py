"""#19 class 2: no command writes over a file it reads; refused in one line, the input left as it was.

Paths are compared as real files (`os.path.samefile`): the same checkpoint named through its folder, a
``..`` detour, a symlink or a hard link is still the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import cli_in_process
from robustness_helpers import file_hashes

from tawq_core import ConfigError, create, save_checkpoint
from tawq_core.overwrite import refuse_overwrite

MLP_OPTIONS = {"num_classes": 10, "sample_shape": [1, 8, 8], "hidden": [16]}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A `tawq train --out` folder holding a (untrained) QAT-style checkpoint."""
    model = create("model", "mlp", **{**MLP_OPTIONS, "sample_shape": (1, 8, 8)})
    save_checkpoint(tmp_path / "run" / "model.safetensors", model, {"model": "mlp", "model_options": MLP_OPTIONS,
                                                                    "timesteps": 2, "dataset": "digits"})
    return tmp_path / "run"


def test_export_over_its_own_checkpoint_is_refused(run_dir):
    """The issue's example: `tawq export RUN --format tawq --out RUN/model.safetensors`."""
    before = file_hashes(run_dir)
    result = cli_in_process("export", run_dir, "--format", "tawq", "--out", run_dir / "model.safetensors")
    result.one_line_error("--out", "model.safetensors is an input of this command", "choose another --out")
    assert file_hashes(run_dir) == before


@pytest.mark.parametrize("spelling", ["dotdot", "symlink", "hardlink"])
def test_export_refuses_every_spelling_of_the_same_file(run_dir, tmp_path, spelling):
    checkpoint = run_dir / "model.safetensors"
    if spelling == "dotdot":
        out = run_dir / ".." / run_dir.name / "model.safetensors"
    else:
        out = tmp_path / "elsewhere.safetensors"
        (os.symlink if spelling == "symlink" else os.link)(checkpoint, out)
    before = file_hashes(run_dir)
    result = cli_in_process("export", checkpoint, "--format", "onnx", "--out", out)
    result.one_line_error("is an input of this command")
    assert file_hashes(run_dir) == before


def test_train_refuses_an_out_folder_holding_its_distillation_teacher(run_dir):
    before = file_hashes(run_dir)
    result = cli_in_process("train", "--model", "mlp", "--dataset", "digits", "--model-option", "hidden=[16]",
                            "--timesteps", "2", "--distill-from", run_dir, "--out", run_dir)
    result.one_line_error("--out", "is an input of this command")
    assert file_hashes(run_dir) == before


def test_a_new_file_or_another_file_is_allowed(tmp_path):
    source = tmp_path / "in.safetensors"
    source.write_bytes(b"x")
    refuse_overwrite(tmp_path / "not-yet-written.onnx", [source], "--out")  # does not exist: cannot destroy
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"x")  # same bytes, another file
    refuse_overwrite(other, [source], "--out")
    with pytest.raises(ConfigError, match="is an input of this command"):
        refuse_overwrite(source, [other, source], "--out")


def test_bench_refuses_a_preset_that_its_run_folder_would_overwrite(tiny_preset_file, tmp_path):
    """Any existing file is accepted as a preset; one kept as the run's matrix.md would be rewritten."""
    from tawq_core.bench import load_preset

    out = tmp_path / "results"
    preset = out / load_preset(str(tiny_preset_file)).run_id / "matrix.md"
    preset.parent.mkdir(parents=True)
    preset.write_text(tiny_preset_file.read_text())
    before = file_hashes(out)
    result = cli_in_process("bench", "--preset", preset, "--quiet", "--out", out)
    result.one_line_error("--out", "matrix.md is an input of this command")
    assert file_hashes(out) == before
