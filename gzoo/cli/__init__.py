"""The `gzoo` command line: one module per command group, each thin (parse, call gzoo.api, render).

Command modules import gzoo.api (and through it torch) only inside their commands, so `gzoo --help` and
`gzoo list` stay fast.
"""

import sys
from typing import Annotated

import typer

from gzoo.cli import compress, evaluate, hub, models, results, timing
from gzoo.cli.output import error, stdout
from gzoo.errors import GzooError
from gzoo.version import __version__

app = typer.Typer(help="A model zoo and evaluation suite for compressed image-to-image generators.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
for group in (models, timing, evaluate, hub, compress, results):
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
    """Entry point: run the app; a GzooError becomes one line on stderr and its exit code."""
    try:
        app()  # click handles its own usage errors (exit 2) and exits 0 on success
    except GzooError as err:
        if _State.debug:
            raise
        error(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if _State.debug:
            raise
        error("interrupted")
        sys.exit(130)
