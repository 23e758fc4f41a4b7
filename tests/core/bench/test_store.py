"""The run store: atomic writes never leave partial files, unreadable entries are recomputed."""

from __future__ import annotations

import json
import os

import pytest

from tawq_core.bench.store import RunStore, atomic_path, check_writable, write_json_atomic
from tawq_core.plugin_api.errors import ConfigError


def test_put_get_round_trip_in_the_shared_cache(tmp_path):
    store = RunStore(tmp_path / "run", tmp_path / "cache")
    store.prepare()
    assert store.get("cells", "abc") is None
    store.put("cells", "abc", {"top1": 91.5})
    assert store.get("cells", "abc", required=("top1",)) == {"top1": 91.5}
    assert (tmp_path / "cache" / "cells" / "abc.json").is_file() and not (tmp_path / "run" / "cache").exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "trunc')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_nan_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "x.json", {"v": float("nan")})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text", [
    "{not json",
    "",
    "[1, 2]",
    '{"top1": 91.5}',  # a bare record: no kind/key envelope
    '{"kind": "cells", "key": "another", "record": {"top1": 91.5}}',  # copied from another entry
    '{"kind": "stages", "key": "k", "record": {"top1": 91.5}}',
    '{"kind": "cells", "key": "k", "record": [91.5]}',
    '{"kind": "cells", "key": "k", "record": {"seed": 0}}',  # lacks a field the caller needs
])
def test_invalid_entry_counts_as_missing(tmp_path, text):
    store = RunStore(tmp_path)
    store.prepare()
    (tmp_path / "cache" / "cells").mkdir(parents=True)
    (tmp_path / "cache" / "cells" / "k.json").write_text(text)
    assert store.get("cells", "k", required=("top1",)) is None
    store.put("cells", "k", {"top1": 80.0})  # recomputed work replaces it
    assert store.get("cells", "k", required=("top1",)) == {"top1": 80.0}


def test_non_writer_never_writes(tmp_path):
    store = RunStore(tmp_path / "rank1", writer=False)
    store.prepare()
    store.put("cells", "k", {"a": 1})
    store.write_json("results.json", {})
    assert not (tmp_path / "rank1").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory_is_one_line_config_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="is not writable .*pass --out DIR"):
            check_writable(locked / "results")
    finally:
        locked.chmod(0o700)


def test_output_path_under_a_file_is_one_line_config_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="is not writable \\(Not a directory\\)"):
        check_writable(blocker / "results")
