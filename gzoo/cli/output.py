"""Everything the command line prints: the two consoles, JSON, numbers, progress bars and errors.

Commands print results on stdout (one JSON document with --json) and everything else on stderr, so
``gzoo ... --json | jq`` and ``d=$(gzoo pull ID)`` see only the result.
"""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
from rich.text import Text

from gzoo.report.numbers import human

stdout = Console()
stderr = Console(stderr=True)

__all__ = ["error", "human", "note", "print_json", "progress_bar", "result_line", "stderr", "stdout", "wide_console"]


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
    # Piped output has no terminal width: rich would wrap tables at 80 columns.
    return stdout if stdout.is_terminal else Console(width=200)


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
