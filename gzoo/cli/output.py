"""Everything the command line prints: the two consoles, JSON, numbers, tables, progress bars and errors.

Commands print results on stdout (one JSON document with --json) and everything else on stderr, so
``gzoo ... --json | jq`` and ``d=$(gzoo pull ID)`` see only the result. Nothing folds a model id, a path or a
message: lines are printed unwrapped (the terminal shows them as it likes, copying gives them whole), and
tables fit the terminal by wrapping text cells only, then dropping the columns that repeat the id, then
printing one block per row. Piped, a table is as wide as its content.
"""

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column as RichColumn
from rich.table import Table
from rich.text import Text

from gzoo.report.numbers import human

stdout = Console()
stderr = Console(stderr=True)
UNBOUNDED = 1 << 16  # the width of piped output: no line is ever cut or wrapped

__all__ = ["Column", "error", "human", "note", "print_json", "print_table", "progress_bar", "result_line", "stderr",
           "stdout", "wide_console"]


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def result_line(text: str) -> None:
    """A result (a path, a URL) on stdout exactly as it is: never folded, marked up or highlighted."""
    sys.stdout.write(text + "\n")


def note(text: str) -> None:
    """A line for the person (not the script) on stderr, unfolded."""
    stderr.print(text, highlight=False, markup=False, soft_wrap=True)


def error(message: str) -> None:
    stderr.print(f"gzoo: error: {message}", highlight=False, markup=False, soft_wrap=True)


def wide_console() -> Console:
    """stdout as a terminal shows it, or, piped (no terminal width: rich would wrap at 80), without a width."""
    return stdout if stdout.is_terminal else Console(width=UNBOUNDED)


@dataclass(frozen=True)
class Column:
    """A table column and how it may give way to a narrow terminal.

    ``id``: model ids and paths, never cut or wrapped. ``keep``: short values (numbers, names), never wrapped.
    ``wrap``: text, wrapped at spaces. ``repeat``: repeats what the id says (method, task): dropped first.
    """

    header: str
    kind: Literal["id", "keep", "wrap", "repeat"] = "keep"
    justify: Literal["left", "right"] = "left"


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], console: Console | None = None) -> None:
    """Rows as a table that fits ``console`` (default: stdout, unbounded when piped) without cutting a value.

    Text cells wrap first; if that is not enough, the columns that repeat the id go; if even that is not enough,
    each row is printed as a block: its id on a line of its own, then its other values.
    """
    console = console or wide_console()
    shown = list(range(len(columns)))
    for candidate in (shown, [i for i in shown if columns[i].kind != "repeat"]):
        widths = _fit([columns[i] for i in candidate], [[row[i] for i in candidate] for row in rows], console.width)
        if widths is not None:
            table = Table(*(_rich_column(columns[i], width) for i, width in zip(candidate, widths, strict=True)))
            for row in rows:
                table.add_row(*(Text(row[i]) for i in candidate))
            console.print(table)
            return
    _print_blocks(columns, rows, console)


def _fit(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int] | None:
    """Column widths that fit ``width`` with every id and kept value whole, or None.

    Each column starts at its natural width; over the width, the widest text column gives way first, down to its
    longest word (a header wraps at spaces too).
    """
    available = width - (3 * len(columns) + 1)  # the table's borders and each cell's padding of 1 on both sides
    natural, least = [], []
    for index, column in enumerate(columns):
        cells = [row[index] for row in rows]
        header_word = max(map(cell_len, column.header.split()), default=0)
        longest = max(map(cell_len, cells), default=0)
        natural.append(max(cell_len(column.header), longest))
        if column.kind in ("id", "keep"):
            least.append(max(header_word, longest))
        else:
            least.append(max([header_word, *(cell_len(word) for cell in cells for word in cell.split())]))
    if sum(least) > available:
        return None
    widths = list(natural)
    while sum(widths) > available:
        index = max((i for i in range(len(widths)) if widths[i] > least[i]), key=lambda i: widths[i] - least[i])
        widths[index] -= 1
    return widths


def _rich_column(column: Column, width: int) -> RichColumn:
    return RichColumn(Text(column.header), width=width, justify=column.justify, overflow="fold")


def _print_blocks(columns: Sequence[Column], rows: Sequence[Sequence[str]], console: Console) -> None:
    """The compact layout: per row, its first value (the id) unwrapped on its own line, every other id on its own
    line, then the remaining values (those that repeat the id left out) as one indented paragraph wrapped at
    spaces."""
    for row in rows:
        console.print(row[0], highlight=False, markup=False, soft_wrap=True)
        rest = list(zip(columns, row, strict=True))[1:]
        for column, value in rest:
            if column.kind == "id" and value != "-":
                console.print(f"  {column.header} {value}", highlight=False, markup=False, soft_wrap=True)
        details = [f"{column.header} {value}".strip() for column, value in rest
                   if column.kind in ("keep", "wrap") and value != "-"]
        for line in Text(" · ".join(details)).wrap(console, max(console.width - 2, 20), overflow="fold"):
            console.print(f"  {line.plain.rstrip()}", highlight=False, markup=False, soft_wrap=True)


class _Count(MofNCompleteColumn):
    """'done/total', and nothing while the total is not known yet (rich would show '0/?')."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


@contextmanager
def progress_bar(description: str) -> Iterator:
    """A transient rich progress bar on stderr, advanced by the API's (done, total, label) callback.

    Only on a terminal: in logs and pipes it would leave blank lines around error messages.
    """
    with Progress(TextColumn("{task.description}"), BarColumn(), _Count(), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        job = bar.add_task(description, total=None)

        def advance(done: int, total: int, label: str) -> None:
            bar.update(job, completed=done, total=total, description=f"{description} {label}".strip())

        yield advance
