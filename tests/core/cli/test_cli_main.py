"""The CLI contract: version, one-line errors with exit code 2, --debug tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cli_helpers import cli_in_process

import tawq_core
from tawq_core import cli as cli_module


def test_the_installed_console_script(tmp_path):
    """`tawq` as a user's shell starts it: the entry point pyproject.toml declares, in a fresh process
    (cheap: neither call imports torch). Everything else here calls the same `main` in-process."""
    script = shutil.which("tawq", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the tawq console script is not installed next to this interpreter")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert tawq_core.__version__ in version.stdout
    unknown = subprocess.run([script, "no-such-command"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr and "Traceback" not in unknown.stderr


def test_plugins_table_lists_backends_with_availability():
    result = cli_in_process("plugins")
    assert result.returncode == 0, result.stderr
    cpu_line = next(line for line in result.stdout.splitlines() if line.startswith("backend") and " cpu " in line)
    assert "available" in cpu_line and "tawq" in cpu_line


@click.command()
def boom_command() -> None:
    raise tawq_core.PluginNotFound("quantizer", "nope", ["fp32", "tawq"])


@pytest.fixture
def boom(monkeypatch):
    monkeypatch.setitem(cli_module.COMMANDS, "boom", f"{__name__}:boom_command")


def test_tawq_error_is_one_line_exit_2(boom, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["boom"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: unknown quantizer 'nope'; known quantizers: fp32, tawq\n"


def test_debug_shows_the_traceback(boom):
    with pytest.raises(tawq_core.PluginNotFound):
        cli_module.main(["--debug", "boom"])


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "No such command" in capsys.readouterr().err


@click.command()
def ctrl_c_command() -> None:
    raise KeyboardInterrupt


def test_ctrl_c_exits_130_with_a_message_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setitem(cli_module.COMMANDS, "ctrl-c", f"{__name__}:ctrl_c_command")
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["ctrl-c"])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
