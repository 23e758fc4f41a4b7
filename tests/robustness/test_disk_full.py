"""A full disk in the middle of a bench: one line, exit 2, and everything finished before is kept."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest
from robustness_helpers import assert_kept, file_hashes


def test_disk_full_mid_bench_is_one_line_and_keeps_finished_cells(tiny_preset_file, tmp_path, monkeypatch, capsys):
    """ENOSPC simulated in-process: once the first cell and results.json are written, every further write of
    the run directory fails as a full disk would. Nothing written before may change, no temporary is left."""
    from tawq_core import cli
    from tawq_core.bench.runner import Runner

    out = tmp_path / "results"
    state: dict = {"full": False, "before": None}
    real_write_text, real_write = pathlib.Path.write_text, Runner.write

    def write_text(self, *args, **kwargs):
        if state["full"] and out in self.parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(self, *args, **kwargs)

    def write(self, *args, **kwargs):
        result = real_write(self, *args, **kwargs)
        if self.records and not state["full"]:  # the first cell is finished and listed: now the disk fills
            state["full"], state["before"] = True, file_hashes(out)
        return result

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    monkeypatch.setattr(Runner, "write", write)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--preset", str(tiny_preset_file), "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    for words in ("error: cannot write ", "(No space left on device); everything finished before is kept",
                  "free some disk space or pass --out DIR on another disk", "re-run the same command to resume"):
        assert words in err
    assert_kept(out, state["before"])
    (run_dir,) = (p for p in out.iterdir() if p.name != "cache")  # the cache is shared by every run
    assert [r["quantizer"] for r in json.loads((run_dir / "results.json").read_text())["records"]] == ["fp32"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
