"""Checks of real `tawq` CLI runs shared by test folders (a uniquely named module: `from conftest import`
is ambiguous among several conftests)."""

from __future__ import annotations

import subprocess


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str, ignore_case: bool = True) -> str:
    """Exit code 2, exactly one line on stderr starting with ``error:``, no traceback, and each of `words`
    in it (case-insensitive unless `ignore_case` is false). Returns the line."""
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode == 2, (result.returncode, err)
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    line = lines[0]
    assert line.startswith("error: "), line
    fold = str.lower if ignore_case else str
    missing = [w for w in words if fold(w) not in fold(line)]
    assert not missing, f"{missing} not in {line!r}"
    return line
