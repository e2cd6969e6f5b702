"""`gzoo list`, `gzoo info` and `gzoo leaderboard`: the zoo and its measured figures."""

import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gzoo.cli.options import JsonOption, MethodOption, TaskOption
from gzoo.cli.output import human, note, print_json, progress_bar, stdout, wide_console


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command()(info)
    app.command()(leaderboard)


def list_command(method: MethodOption = None, task: TaskOption = None, as_json: JsonOption = False,
                 archs: Annotated[bool, typer.Option("--archs", help="List registered architectures.")] = False,
                 ) -> None:
    """List the zoo's models (or, with --archs, the registered architectures)."""
    from gzoo import api

    if archs:
        catalogue = api.architectures()
        if as_json:
            print_json(catalogue)
            return
        for name, arguments in catalogue.items():
            stdout.print(f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})", highlight=False)
        return
    models = api.list_models(method, task)
    if as_json:
        print_json(models)
        return
    if not models:
        return nothing_matched(method, task)
    table = Table("id", "method", "task", "arch", "params", "MACs (paper)", "teacher")
    for m in models:
        table.add_row(m["id"], m["method"], m["task"], m["arch"], human(m["params"]), human(m["macs_paper"]),
                      m["teacher"] or "-")
    stdout.print(table)


def nothing_matched(method: str | None, task: str | None) -> None:
    """The line for filters that match no entry (a result, not an error: exit 0), instead of an empty table."""
    asked = " and ".join(f"{name} '{value}'" for name, value in (("method", method), ("task", task)) if value)
    note(f"no zoo entry has {asked}; `gzoo list` shows every entry")


def info(model_id: Annotated[str, typer.Argument(help="A zoo id (e.g. gan-compression/horse2zebra) or a "
                                                      "model directory.")],
         as_json: JsonOption = False) -> None:
    """Describe a zoo entry or a model directory: architecture, input, weights, published numbers, figures."""
    from gzoo import api

    if Path(model_id).is_dir():
        described = api.directory_info(Path(model_id))
        if as_json:
            print_json(described)
        else:
            for key, value in described.items():
                stdout.print(f"  {key:14}{value}", highlight=False, markup=False)
        return
    entry = api.model_info(model_id)
    if as_json:
        print_json(entry)
        return
    args = ", ".join(f"{k}={v!r}" for k, v in entry["arch_args"].items())
    shape = entry["input"]
    stdout.print(f"[bold]{entry['id']}[/bold]  ({entry['method']}, {entry['task']})")
    stdout.print(f"  architecture  {entry['arch']}({args})", highlight=False)
    stdout.print(f"  input         {shape['channels']}x{shape['height']}x{shape['width']}")
    stdout.print(f"  teacher       {entry['teacher'] or '-'}")
    stdout.print(f"  params        {entry['params']:,}  ({human(entry['params'])})")
    stdout.print(f"  MACs          {human(entry['macs'])} true, {human(entry['macs_paper'])} paper convention")
    stdout.print(f"  paper         {('arXiv ' + entry['paper']) if entry['paper'] else '-'}")
    stdout.print(f"  license       {entry['license'] or '-'}")
    weights = entry["weights"]
    if weights:
        source = next(k for k in weights if k != "format")
        stdout.print(f"  weights       {source}: {weights[source]}  (format {weights['format']})", highlight=False)
    for r in entry["reported"]:
        protocol = f" [{r['protocol']}]" if r.get("protocol") else ""
        stdout.print(f"  reported      {r['metric']} {r['value']:g}  ({r['source']}){protocol}", highlight=False)


def leaderboard(method: MethodOption = None, task: TaskOption = None,
                output_format: Annotated[str | None, typer.Option(
                    "--format", help="table, md, csv, json or html (default: from -o's suffix, else table).",
                    show_default=False)] = None,
                output: Annotated[Path | None, typer.Option(
                    "-o", "--output", help="Write the board to this file (atomically) instead of stdout.")] = None,
                plot: Annotated[Path | None, typer.Option(
                    "--plot", help="Also draw quality against cost to this file (.png, .svg, ...; one file per task "
                    "when several: FILE-TASK.png). Needs pip install 'gzoo[plot]'.")] = None,
                remeasure: Annotated[bool, typer.Option("--remeasure", help="Time every latency again instead of "
                                                        "reading the cached ones.")] = False,
                ) -> None:
    """Measure every zoo entry on this machine and show it beside the published numbers."""
    from gzoo import api, report
    from gzoo.report import plot as plots

    fmt = report.output_format(output_format, output)
    for destination in filter(None, (output, plot)):
        report.check_destination(destination)
    if plot:
        plots.check_plot_path(plot)
    with progress_bar("measuring") as advance:
        board = api.leaderboard(method, task, progress=advance, remeasure=remeasure)
    if not board["rows"] and fmt in ("table", "md"):
        return nothing_matched(method, task)
    figures = plots.task_figures(board) if plot else None
    files = plots.plot_files(board, plot, figures) if plot else {}
    if fmt == "table" and output is None:
        _print_table(board, wide_console())
    else:
        text = _table_text(board) if fmt == "table" else report.render(board, fmt, figures)
        if output is None:
            sys.stdout.write(text)
        else:
            files[output] = text.encode()
    report.write_files(files)
    for path in files:
        note(f"wrote {path}")


def _print_table(board: dict, console: Console) -> None:
    from gzoo import report

    footnotes = report.sources(board["rows"])
    table = Table(*report.COLUMNS)
    for row in board["rows"]:
        table.add_row(*report.cells(row, footnotes))
    console.print(table)
    for line in report.notes(board, footnotes):
        console.print(line, highlight=False, markup=False)


def _table_text(board: dict) -> str:
    """The table as plain text, for a file."""
    console = Console(file=io.StringIO(), width=200, color_system=None)
    _print_table(board, console)
    return console.file.getvalue()
