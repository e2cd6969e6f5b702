"""The leaderboard as one self-contained HTML page: no network, no CDN (the style sheet, the script and the plots
are inline), a table sortable by every column and filtered by task and method, each number's provenance on hover
(``title``) and on expand (``<details>``), screen-readable markup (caption, ``th scope``, ``aria-sort`` set by the
script) and a print style.

``to_html`` is a pure function of the document ``gzoo.api.leaderboard`` returns (``--format json``), so a board
saved as JSON can be rendered anywhere.
"""

import math
from datetime import datetime, timezone
from html import escape
from importlib.resources import files

from gzoo.report.leaderboard import COLUMNS, cells, notes, sources, unreproduced, unreproduced_line
from gzoo.report.numbers import readable

# How each column sorts: by the row's raw number (not the rounded text), or as text; and which are right-aligned.
NUMERIC = {"params", "MACs", "MACs paper", "CPU ms", "MACs ÷ teacher", "speed-up", "input", "reported", "measured"}
RIGHT_ALIGNED = NUMERIC - {"input", "reported", "measured"}


def _attribute(text: str) -> str:
    return escape(text, quote=True)


def _number(value: object) -> str:
    """A sort key for data-sort: a finite number as text, "Infinity" for "inf", "" (sorted last) for none."""
    if isinstance(value, str):
        return {"inf": "Infinity", "-inf": "-Infinity"}.get(value, "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value))


def measured_provenance(metric: str, measured: dict) -> list[str]:
    """A measured number's provenance, one 'what: value' line each: protocol, images, device, versions, date."""
    protocol = measured["protocol"]
    lines = [f"{metric} {measured['value']}: {protocol['name']}"]
    lines += [f"{key}: {value}" for key, value in protocol.items() if key != "name"]
    if measured.get("protocol_differs"):
        lines.append("† not the paper's protocol: not comparable with the reported number")
    lines += [f"device: {measured['device']}", f"gzoo {measured['gzoo_version']}, torch {measured['torch_version']}",
              f"measured {measured['date']}"]
    if measured.get("dataset"):
        lines.append(f"data: {measured['dataset']}" + (f" (sha256 {measured['dataset_sha256'][:12]}…)"
                                                        if measured.get("dataset_sha256") else ""))
    lines.append(f"weights sha256 {measured['weights_sha256'][:12]}…" if measured.get("weights_sha256")
                 else "weights: random (architecture only)")
    return lines


def reported_provenance(reported: dict) -> list[str]:
    lines = [f"{reported['metric']} {readable(reported['value'])}, reported (published, not measured here)",
             f"source: {reported['source']}"]
    return lines + ([f"protocol: {reported['protocol']}"] if reported.get("protocol") else [])


def _figure_provenance(row: dict, board: dict) -> dict[str, list[str]]:
    """What the architecture figures of a row are, per column."""
    shape = f"input {row['input']}"
    counted = f"counted by gzoo {board['gzoo_version']} (torch {board['torch_version']}) at {shape}"
    lines = {"params": [f"{row['params']:,} parameters of the deployed generator" if row["params"] else
                        "not measurable yet", counted],
             "MACs": ["true multiply-accumulates (a transposed conv counted over its input)", counted],
             "MACs paper": ["torchprofile convention of the papers (transposed conv over its output, norms one per "
                            "element)", counted]}
    if not row["measurable"]:
        published = next((r for r in row.get("reported_all", []) if r["metric"] == "macs_paper"), None)
        lines["MACs paper"] = ["the exact architecture is unknown (e.g. widths found by pruning)"] + (
            reported_provenance(published) if published else [])
        lines["params"] = lines["MACs"] = ["the exact architecture is unknown: not counted"]
    if row["latency_ms"] is not None:
        lines["CPU ms"] = [f"{board['latency']}: {row['latency_ms']:.2f} ms over {row['latency_runs']} timed runs, "
                           f"interquartile range {row['latency_iqr_ms'] or 0:.2f} ms",
                           f"{board['cpu']}, {board['threads']} threads, torch {board['torch_version']}"]
    if row["macs_reduction"] is not None:
        lines["MACs ÷ teacher"] = [f"MACs (paper convention) of the teacher {row['teacher']} divided by this entry's"]
        lines["speed-up"] = [f"CPU latency of the teacher {row['teacher']} divided by this entry's, measured in the "
                             "same run"]
    return lines


def _cell(column: str, text: str, sort: str, provenance: list[str], sort_group: str = "") -> str:
    """A table cell: the number, its provenance as a tooltip and, where it has any, as an expandable block."""
    attributes = f' data-sort="{_attribute(sort)}"' + (f' data-group="{_attribute(sort_group)}"' if sort_group
                                                       else "")
    if column in RIGHT_ALIGNED:
        attributes += ' class="num"'
    if not provenance:
        return f"<td{attributes}>{escape(text)}</td>"
    tooltip = _attribute("\n".join(provenance))
    body = "".join(f"<li>{escape(line)}</li>" for line in provenance)
    return (f'<td{attributes} title="{tooltip}"><details class="provenance"><summary>{escape(text)}</summary>'
            f"<ul>{body}</ul></details></td>")


def _row(row: dict, board: dict, footnotes: list[str]) -> str:
    texts = dict(zip(COLUMNS, cells(row, footnotes), strict=True))
    figures = _figure_provenance(row, board)
    reported = row["reported"]
    headline = row["measured_headline"]
    measured = row["measured"].get(headline) if headline else None
    _, height, width = (int(n) for n in row["input"].split("x"))
    sort = {"id": row["id"], "method": row["method"], "task": row["task"], "input": _number(height * width),
            "params": _number(row["params"]), "MACs": _number(row["macs"]),
            "MACs paper": _number(row["macs_paper"] if row["measurable"] else row["reported_macs_paper"]),
            "CPU ms": _number(row["latency_ms"]), "MACs ÷ teacher": _number(row["macs_reduction"]),
            "speed-up": _number(row["latency_speedup"]),
            "reported": _number(reported and reported["value"]), "measured": _number(measured and measured["value"])}
    provenance = {**figures, "reported": reported_provenance(reported) if reported else [],
                  "measured": [line for metric, value in row["measured"].items()
                               for line in measured_provenance(metric, value)]}
    groups = {"reported": reported["metric"] if reported else "", "measured": headline or ""}
    identity = [f"architecture {row['arch']}", f"teacher {row['teacher'] or '-'}"] + (
        ["a local model directory"] if row.get("local") else [])
    out = [f'<tr data-task="{_attribute(row["task"])}" data-method="{_attribute(row["method"])}" '
           f'data-id="{_attribute(row["id"])}">',
           f'<th scope="row" data-sort="{_attribute(row["id"])}" title="{_attribute(chr(10).join(identity))}">'
           f"{escape(row['id'])}</th>"]
    out += [_cell(column, texts[column], sort[column], provenance.get(column, []), groups.get(column, ""))
            for column in COLUMNS[1:]]
    return "".join(out) + "</tr>"


def _options(values: list[str]) -> str:
    return "".join(f'<option value="{_attribute(v)}">{escape(v)}</option>' for v in sorted(set(values)))


def machine_line(board: dict) -> str:
    """'AMD EPYC, 2 threads; eager PyTorch, batch 1, median of timed runs; torch 2.14.1, gzoo 0.1.0'."""
    return (f"{board['cpu']}, {board['threads']} threads; {board['latency']}; torch {board['torch_version']}, "
            f"gzoo {board['gzoo_version']}")


def _notes(board: dict, footnotes: list[str]) -> str:
    caption, *numbered = notes(board, footnotes)
    parts = ["<section aria-labelledby='notes-heading'><h2 id='notes-heading'>Notes</h2>", f"<p>{escape(caption)}</p>"]
    parts.append("<ol class='sources'>" + "".join(
        f"<li id='source-{i}'>{escape(line.split('] ', 1)[1])}</li>" for i, line in enumerate(numbered, 1))
        + "</ol>")
    missing = unreproduced(board["rows"])
    if missing:
        parts.append("<h3>Published numbers that gzoo's count of the same architecture does not reproduce</h3>"
                     "<p>Beyond the published rounding and 1% (torchprofile versions differ by about that much in "
                     "counting norms). The table shows what the architecture has.</p><ul class='unreproduced'>"
                     + "".join(f"<li>{escape(unreproduced_line(item))}</li>" for item in missing) + "</ul>")
    daggers = [(row, metric, value) for row in board["rows"] for metric, value in row["measured"].items()
               if value.get("protocol_differs")]
    if daggers:
        parts.append("<h3>† Measured under another protocol than the paper's</h3><ul class='daggers'>" + "".join(
            f"<li>{escape(row['id'])} {escape(metric)}: measured “{escape(value['protocol']['name'])}”; "
            f"the paper: “{escape(_paper_protocol(row, metric))}”</li>" for row, metric, value in daggers) + "</ul>")
    return "".join(parts) + "</section>"


def _paper_protocol(row: dict, metric: str) -> str:
    published = next((r for r in row.get("reported_all", []) if r["metric"] == metric), {})
    return published.get("protocol") or "not stated"


def _plots(plots: list[tuple[str, str]] | None, plot_note: str | None) -> str:
    if not plots and not plot_note:
        return ""
    parts = ["<section id='plots' aria-labelledby='plots-heading'>"
             "<h2 id='plots-heading'>Quality against cost</h2>"]
    if plot_note:
        parts.append(f"<p class='plot-note'>{escape(plot_note)}</p>")
    for i, (task, svg) in enumerate(plots or [], 1):
        parts.append(f"<figure class='plot' data-task='{_attribute(task)}' aria-labelledby='plot-{i}'>{svg}"
                     f"<figcaption id='plot-{i}'>{escape(task)}: the reported quality metric against MACs (paper "
                     "convention) and against CPU latency, both on log scales; filled: reported, hollow: measured; "
                     "arrows run from each teacher to its students; the dashed line is the Pareto front."
                     "</figcaption></figure>")
    return "".join(parts) + "</section>"


def to_html(board: dict, plots: list[tuple[str, str]] | None = None, plot_note: str | None = None,
            generated: datetime | None = None) -> str:
    """The page. ``plots``: (task, inline ``<svg>``) pairs, see ``gzoo.report.plot.svg_plots``; ``plot_note``: a
    line in place of (or above) them, e.g. how to install matplotlib."""
    rows = board["rows"]
    footnotes = sources(rows)
    when = (generated or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    static = files("gzoo.report")
    header = "".join(
        f'<th scope="col" data-type="{"number" if column in NUMERIC else "text"}"><button type="button">'
        f"{escape(column)}<span class='arrow' aria-hidden='true'></span></button></th>" for column in COLUMNS)
    total = len(rows)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="gzoo {_attribute(board['gzoo_version'])}">
<title>gzoo leaderboard</title>
<style>
{static.joinpath("board.css").read_text()}</style>
</head>
<body>
<header>
<h1>gzoo leaderboard</h1>
<p class="machine">Measured here: {escape(machine_line(board))}. Built {when}.</p>
</header>
<main>
<form class="filters" aria-label="Filter the leaderboard">
<label>Task <select id="filter-task" name="task"><option value="">all tasks</option>{_options(
    [r["task"] for r in rows])}</select></label>
<label>Method <select id="filter-method" name="method"><option value="">all methods</option>{_options(
    [r["method"] for r in rows])}</select></label>
<output id="shown" aria-live="polite">{total} of {total} rows</output>
</form>
<table id="board" data-rows="{total}">
<caption>The leaderboard: {total} entries. Measured on {escape(machine_line(board))}. Reported numbers are published
ones, with their sources below; select a column header to sort by it, a number to see where it comes from.</caption>
<thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(_row(row, board, footnotes) for row in rows)}
</tbody>
</table>
{_notes(board, footnotes)}
{_plots(plots, plot_note)}
<p class="generated">Made by gzoo {escape(board['gzoo_version'])}: params, MACs and CPU ms counted and timed on
this machine, measured numbers read from the results store {escape(board['results_store'])}.</p>
</main>
<script>
{static.joinpath("board.js").read_text()}</script>
</body>
</html>
"""


def page(board: dict, figures: list | None = None) -> str:
    """``to_html`` with the plots inline as SVG where matplotlib is installed, else a line saying how to get them.
    ``figures``: ``gzoo.report.plot.task_figures(board)``, when drawn already."""
    from gzoo.report import plot

    if not plot.available():
        return to_html(board, plot_note=f"The plots of quality against cost need matplotlib: {plot.INSTALL_HINT}")
    plotted = plot.plotted_tasks(board)
    skipped = [task for task in dict.fromkeys(row["task"] for row in board["rows"]) if task not in plotted]
    note = (f"Not plotted, having no quality metric ({', '.join(plot.QUALITY)}) reported or measured: "
            f"{', '.join(skipped)}.") if skipped else None
    return to_html(board, plot.svg_plots(board, figures), note)
