"""Report outputs: choosing a format, refusing a destination before any work, rendering, and writing files whole
(every file rendered in memory first, each written to a temporary file and renamed, so a failure leaves no half
a file and no half a set of files)."""

import json
import os
from pathlib import Path

from gzoo.errors import GzooError
from gzoo.paths import atomic_write_bytes
from gzoo.report.leaderboard import to_csv, to_markdown

LEADERBOARD_FORMATS = ("table", "md", "csv", "json", "html")
SUFFIXES = {".md": "md", ".csv": "csv", ".json": "json", ".html": "html", ".htm": "html", ".txt": "table"}


def output_format(name: str | None, output: Path | None, formats: tuple[str, ...] = LEADERBOARD_FORMATS,
                  default: str = "table") -> str:
    """The format asked for, else the one ``output``'s suffix names (board.html: html), else ``default``."""
    if name is None:
        guessed = SUFFIXES.get(output.suffix.lower()) if output else None
        return guessed if guessed in formats else default
    if name.lower() not in formats:
        raise GzooError(f"unknown format {name!r}; choose one of {', '.join(formats)}")
    return name.lower()


def check_destination(path: Path) -> None:
    """Refuse a file gzoo could not write, before any measuring: its folder missing or read-only, or a folder."""
    if path.is_dir():
        raise GzooError(f"{path} is a folder; give a file name, e.g. {path / 'board.html'}")
    folder = path.parent
    if not folder.is_dir():
        raise GzooError(f"cannot write {path}: the folder {folder} does not exist; create it first or write "
                        "elsewhere")
    if not os.access(folder, os.W_OK):
        raise GzooError(f"cannot write {path}: the folder {folder} is not writable; write elsewhere")


def write_files(files: dict[Path, bytes]) -> None:
    """Write each file atomically, after all of them have been rendered."""
    for path in files:
        check_destination(path)
    for path, data in files.items():
        try:
            atomic_write_bytes(path, data)
        except OSError as err:
            raise GzooError(f"cannot write {path}: {err.strerror}", exit_code=1) from None


def to_json(document: dict) -> str:
    """A document as the command line prints JSON: indented, with one trailing newline."""
    return json.dumps(document, indent=2) + "\n"


def render(board: dict, fmt: str, figures: list | None = None) -> str:
    """The board as md, csv, json or html text (the table format is the command line's). ``figures``: the plots'
    figures when they were drawn already (``gzoo.report.plot.task_figures``), for the html page."""
    if fmt == "json":
        return to_json(board)
    if fmt == "csv":
        return to_csv(board)
    if fmt == "md":
        return to_markdown(board)
    if fmt == "html":
        from gzoo.report.html import page

        return page(board, figures)
    raise ValueError(f"render: no text renderer for {fmt!r}")
