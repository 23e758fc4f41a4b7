"""#19 class 8: messages that say what is true.

Ctrl-C during `tawq train` says what is saved, and it is: the last finished epoch, from which the same
command resumes (on CPU to the bit-identical result of an uninterrupted run). Model options that
contradict the data, a validation share that leaves nothing to train on, and a bench that fails before
its first cell each get one line blaming the right thing, and leave no empty folders behind.
"""

from __future__ import annotations

import pytest
from cli_helpers import cli_in_process

import tawq_core.training.train_resume as train_resume

TRAIN = ("train", "--model", "mlp", "--model-option", "hidden=[16,16]", "--dataset", "digits", "--quantizer", "tawq",
         "--timesteps", "2", "--epochs", "2", "--batch-size", "128", "--lr", "0.01", "--warmup-epochs", "0",
         "--no-progress")


def _interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C arrives right after epoch `epoch` was saved (or, for 0, before any epoch finished)."""
    real_save = train_resume.ResumeFile.save

    def save(self, finished, *args, **kwargs):
        if epoch == 0:
            raise KeyboardInterrupt
        real_save(self, finished, *args, **kwargs)
        if finished == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_resume.ResumeFile, "save", save)


def test_ctrl_c_saves_the_last_finished_epoch_and_the_same_command_resumes(tmp_path, monkeypatch):
    reference = cli_in_process(*TRAIN, "--out", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 1)
        stopped = cli_in_process(*TRAIN, "--out", out)
    assert stopped.returncode == 130
    assert stopped.stderr == (f"interrupted: epoch 1/2 is saved in {out / 'resume.safetensors'}; re-run the same "
                              "command to resume from it\n")
    assert (out / "resume.safetensors").is_file() and not (out / "model.safetensors").exists()

    resumed = cli_in_process(*TRAIN, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / "resume.safetensors").exists()  # the finished run's checkpoint replaces it
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "reference" / "model.safetensors").read_bytes()


def test_ctrl_c_before_the_first_epoch_claims_nothing(tmp_path, monkeypatch):
    _interrupt_after_epoch(monkeypatch, 0)
    stopped = cli_in_process(*TRAIN, "--out", tmp_path / "run")
    assert stopped.returncode == 130
    assert stopped.stderr.startswith("interrupted before the first epoch finished: nothing was saved")


def test_resume_state_of_another_command_is_not_continued(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 1)
        assert cli_in_process(*TRAIN, "--out", out).returncode == 130
    other = cli_in_process(*[("0.02" if a == "0.01" else a) for a in TRAIN], "--out", out)
    other.one_line_error(f"{out / 'resume.safetensors'} holds an unfinished run of a different command",
                         "re-run that command to resume it")


@pytest.mark.parametrize(("option", "words"), [
    ("num_classes=3", "--model-option num_classes=3 contradicts dataset 'digits', which has num classes 10"),
    ("sample_shape=[1,4,4]", "--model-option sample_shape=[1, 4, 4] contradicts dataset 'digits'"),
])
def test_model_options_that_contradict_the_data_are_one_line(tmp_path, option, words):
    """The issue's example crashed with IndexError (train) or 'got multiple values' (bench)."""
    result = cli_in_process(*TRAIN, "--model-option", option, "--out", tmp_path / "run")
    result.one_line_error(words, "tawq sets it from the dataset, drop the option")


def test_bench_model_options_that_contradict_the_data_are_one_line(tiny_preset_file, tmp_path):
    preset = tmp_path / "classes.toml"
    preset.write_text(tiny_preset_file.read_text().replace("hidden = [16, 16]", "hidden = [16, 16]\nnum_classes = 3"))
    result = cli_in_process("bench", "--preset", preset, "--quiet", "--out", tmp_path / "results")
    result.one_line_error("model_options: num_classes=3 contradicts dataset 'digits'")
    assert not (tmp_path / "results").exists()  # failed before its first cell: no empty folders


def test_val_fraction_that_leaves_nothing_blames_the_val_fraction(tmp_path):
    """The issue's example blamed the batch size."""
    result = cli_in_process(*TRAIN, "--val-fraction", "0.9999", "--out", tmp_path / "run")
    result.one_line_error("val_fraction 0.9999 holds out 1347 of the 1347 training samples",
                          "use a smaller val_fraction (--val-fraction)")
    too_big = cli_in_process(*TRAIN, "--val-fraction", "0.95", "--out", tmp_path / "run")
    too_big.one_line_error("batch_size 128 exceeds the 67 training samples left after val_fraction 0.95",
                           "use a smaller batch or val_fraction")


def test_a_bench_that_fails_before_its_first_cell_leaves_no_folder(tiny_preset_file, tmp_path):
    out = tmp_path / "results"
    result = cli_in_process("bench", "--preset", tiny_preset_file, "--dataset", "shd", "--data-dir",
                            tmp_path / "no-data", "--quiet", "--out", out)
    result.one_line_error("dataset 'shd'", "is missing or incomplete")
    assert not out.exists()


def test_a_failing_bench_keeps_an_existing_results_folder(tiny_preset_file, tmp_path):
    out = tmp_path / "results"
    (out / "earlier-run").mkdir(parents=True)
    (out / "earlier-run" / "results.json").write_text("{}\n")
    result = cli_in_process("bench", "--preset", tiny_preset_file, "--dataset", "shd", "--data-dir",
                            tmp_path / "no-data", "--quiet", "--out", out)
    assert result.returncode == 2
    assert sorted(p.name for p in out.iterdir()) == ["earlier-run"]  # only what this run created is removed
