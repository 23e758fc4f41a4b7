"""The `tawq` command line: a thin click group; each command lives in its own module of this package.

Every `TawqError` becomes one line on stderr and exit code 2 (``--debug`` shows the traceback), and
so does any exception (SystemExit included) raised inside a third-party plugin's code: the line names
the plugin, its kind and distribution (`tawq_core.plugin_api.plugin_boundary`).

torch auto-loads an installed torch_npu at ``import torch``; without Ascend CANN that import fails and
takes torch down with it. tawq's npu backend imports torch_npu itself when it is used, so the command
turns auto-loading off for its own process before anything imports torch (this module imports no torch
at its top). A library must not do that to its host process: programs importing tawq on such machines
set ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` themselves (docs/backends.md).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from tawq_core.plugin_api.errors import Interrupted, TawqError

#: torch's switch for loading device extensions (torch_npu) at ``import torch``; the command sets it to 0
#: unless the caller chose a value.
TORCH_AUTOLOAD = "TORCH_DEVICE_BACKEND_AUTOLOAD"

# command name -> "module:attribute"; imported only when that command runs, so `tawq --help`
# and `tawq plugins` stay fast and a broken command module cannot break the others.
COMMANDS: dict[str, str] = {
    "plugins": "tawq_core.cli.plugins:plugins",
    "train": "tawq_core.cli.train:train",
    "bench": "tawq_core.cli.bench:bench",
    "report": "tawq_core.cli.report:report",
    "export": "tawq_core.cli.export:export",
    "eval": "tawq_core.cli.eval:eval_packed",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context) -> object:
        # Catch Ctrl-C before click does: click would print a blank line and turn it into a bare Abort.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted (tawq writes files atomically: none was left half-written)") from None


def _version() -> str:
    from tawq_core import __version__

    return __version__


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="tawq")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """tawq: temporal-adaptive ultra-low-bit weight quantization for spiking neural networks."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault(TORCH_AUTOLOAD, "0")  # before any command imports torch
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="tawq", standalone_mode=False)
    except TawqError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Interrupted as exc:
        if debug:
            raise
        if sys.stderr.isatty():
            click.echo(err=True)  # close the terminal's ^C echo
        click.echo(str(exc), err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt) as exc:
        # click turns Ctrl-C into Abort (with the KeyboardInterrupt as its cause)
        interrupted = isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt)
        if debug and interrupted:
            raise
        click.echo("interrupted" if interrupted else "aborted", err=True)
        sys.exit(130)
    except (Exception, SystemExit) as exc:  # noqa: B036 - plugin code may raise anything, sys.exit() too
        _plugin_failure_or_raise(exc, debug)


def _plugin_failure_or_raise(exc: BaseException, debug: bool) -> None:
    """One line naming the plugin if third-party plugin code raised `exc`; tawq's own bugs re-raise."""
    from tawq_core.plugin_api.plugin_boundary import plugin_failure

    failure = plugin_failure(exc)
    if failure is None or debug:
        raise exc
    click.echo(f"error: {failure} (run with --debug for the traceback)", err=True)
    sys.exit(2)

