"""The `gzoo` command line: one module per command group, each thin (parse, call gzoo.api, render).

Command modules import gzoo.api (and through it torch) only inside their commands, so `gzoo --help` and
`gzoo list` stay fast.
"""

import sys
from typing import Annotated

import typer
import typer.core

from gzoo.cli import compress, deploy, evaluate, hub, models, results, timing
from gzoo.cli.output import error, stdout
from gzoo.errors import GzooError
from gzoo.version import __version__


def _flags_without_type() -> None:
    """typer 0.2x prints '<bool>' beside every flag in --help (`--json <bool>`), though a flag takes no value:
    show none. Older typer versions print no types, and have nothing to change."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "gzoo", False):
        return

    def display_type_rich(self: typer.core.TyperOption, ctx: object) -> str | None:
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)

    display_type_rich.gzoo = True
    option.display_type_rich = display_type_rich


_flags_without_type()
app = typer.Typer(help="A model zoo and evaluation suite for compressed image-to-image generators.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)
for group in (models, timing, evaluate, hub, compress, deploy, results):
    group.register(app)


class _State:
    debug = False


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"gzoo {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                               callback=_print_version, is_eager=True)] = False,
) -> None:
    _State.debug = debug


def main() -> None:
    """Entry point: run the app; a GzooError or a usage error (a value not among an option's choices, a missing
    option) becomes one line on stderr and its exit code."""
    try:
        # The program is `gzoo` however it was started (python -m gzoo, tests), so usage lines and the shell
        # completion script name the command.
        code = app(prog_name="gzoo", standalone_mode=False)
    except GzooError as err:
        if _State.debug:
            raise
        error(str(err))
        sys.exit(err.exit_code)
    except typer.exceptions.TyperException as err:  # click's usage errors, as typer ships them
        if not hasattr(err, "format_message") or getattr(err, "ctx", None) is None:
            raise
        message = err.format_message().rstrip(".")
        if message:  # none after `gzoo` alone, which printed the help
            error(f"{message}{'' if message.endswith('?') else ';'} see `{err.ctx.command_path} --help`")
        sys.exit(getattr(err, "exit_code", 2))
    except KeyboardInterrupt:  # typer versions that pass it on; others end the command with exit code 130
        if _State.debug:
            raise
        code = 130
    if code == 130:
        error("interrupted")
    sys.exit(code if isinstance(code, int) else 0)
