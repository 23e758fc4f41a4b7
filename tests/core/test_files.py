"""The one atomic write: whole file or none, durable, readable permissions, one-line failures."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tawq_core import files
from tawq_core.plugin_api.errors import ConfigError


def test_json_is_written_whole_with_readable_permissions(tmp_path):
    out = files.write_json_atomic(tmp_path / "a" / "b.json", {"z": 1, "path": tmp_path})
    assert json.loads(out.read_text()) == {"path": str(tmp_path), "z": 1}
    assert out.read_text().index('"path"') < out.read_text().index('"z"')  # sorted keys: diffable
    assert stat.S_IMODE(out.stat().st_mode) == files.FILE_MODE
    assert os.listdir(tmp_path / "a") == ["b.json"]


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    target = files.write_text_atomic(tmp_path / "x.txt", "old")
    with pytest.raises(KeyboardInterrupt), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_nan_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError):
        files.write_json_atomic(tmp_path / "x.json", {"v": float("inf")})
    assert not list(tmp_path.iterdir())


def test_failures_are_one_line_or_the_callers_own(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write .*choose a writable directory"):
        files.write_text_atomic(blocker / "y.txt", "")
    with pytest.raises(OSError):
        files.write_text_atomic(blocker / "y.txt", "", on_error=None)
    with pytest.raises(RuntimeError, match="mine"):
        files.write_text_atomic(blocker / "y.txt", "", on_error=lambda path, exc: RuntimeError("mine"))


def test_file_and_folder_are_synced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)) or real(fd))
    files.write_text_atomic(tmp_path / "x.txt", "data")
    assert synced == [False, True]  # the file's bytes, then the folder entry that names it
