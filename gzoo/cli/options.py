"""Options several commands share, spelled once."""

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
MethodOption = Annotated[str | None, typer.Option("--method", help="Only entries of this method.", metavar="METHOD")]
TaskOption = Annotated[str | None, typer.Option("--task", help="Only entries of this task.", metavar="TASK")]
