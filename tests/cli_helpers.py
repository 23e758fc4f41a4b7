"""Running the `tawq` CLI in this interpreter and checking its one-line errors, shared by test folders (a
uniquely named module: `from conftest import` is ambiguous among several conftests).

Most CLI tests call the entry point in-process (`cli_in_process`): the same argument parsing and error
handling a user's shell gets, without a fresh interpreter importing torch per case. A fresh process (the
`tawq_cli` fixture, tests/conftest.py) is kept for what only a process shows: the console script itself,
installed plugin distributions (entry points are read once per process), signals and exit code 130."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def assert_one_line_error(result: subprocess.CompletedProcess | InProcess, *words: str,
                          ignore_case: bool = True) -> str:
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


@dataclass
class InProcess:
    """What `tawq_core.cli.main` did when called in this interpreter, shaped like a CompletedProcess:
    exit code (0 when it returned) and both streams."""

    returncode: int
    stdout: str
    stderr: str

    def one_line_error(self, *words: str) -> str:
        return assert_one_line_error(self, *words)


def cli_in_process(*args: str | Path) -> InProcess:
    """The real CLI entry point (`tawq_core.cli.main`, what the console script calls) without a fresh
    interpreter. Exceptions main lets through (tawq's own bugs, --debug) propagate to the test. Environment
    variables the command sets for its own process are undone, as a process's would end with it."""
    from tawq_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    code, environ = 0, dict(os.environ)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        finally:
            for name in set(os.environ) - set(environ):
                del os.environ[name]
            os.environ.update(environ)
    return InProcess(code, out.getvalue(), err.getvalue())
