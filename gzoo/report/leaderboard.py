"""The leaderboard document of ``gzoo.api.leaderboard`` rendered as table cells, Markdown and CSV (it is JSON
as it is)."""

import csv
import io

from gzoo.report.numbers import compact, human, readable

COLUMNS = ("id", "method", "task", "input", "params", "MACs", "MACs paper", "CPU ms", "MACs ÷ teacher",
           "speed-up", "reported", "measured")
CSV_FIELDS = ("id", "method", "task", "teacher", "arch", "input", "params", "macs", "macs_paper", "latency_ms",
              "latency_iqr_ms", "reported_metric", "reported_value", "reported_source", "measured_metric",
              "measured_value", "measured_protocol_differs", "macs_reduction", "latency_speedup")


def sources(rows: list[dict]) -> list[str]:
    """Each distinct source of a reported number, in order of first use (footnotes [1], [2], ...)."""
    found: list[str] = []
    for row in rows:
        if row["reported"] and row["reported"]["source"] not in found:
            found.append(row["reported"]["source"])
    return found


def cells(row: dict, footnotes: list[str]) -> list[str]:
    """A row's cells in the order of COLUMNS; ``footnotes`` from ``sources``."""
    reported = row["reported"]
    if not row["measurable"]:
        macs_paper = f"{human(row['reported_macs_paper'])} reported" if row["reported_macs_paper"] else "-"
        latency = "not measurable yet"
    else:
        macs_paper = human(row["macs_paper"])
        latency = ("cannot run" if row["latency_ms"] is None  # in this runtime; row["latency_error"] says why
                   else f"{row['latency_ms']:.1f}" + ("" if row["latency_settled"] else " ~"))
    return [
        row["id"], row["method"], row["task"], row["input"], human(row["params"]), human(row["macs"]),
        macs_paper, latency,
        "-" if row["macs_reduction"] is None else f"{row['macs_reduction']:.1f}x",
        "-" if row["latency_speedup"] is None else f"{row['latency_speedup']:.1f}x",
        "-" if reported is None else
        f"{reported['metric']} {readable(reported['value'])} [{footnotes.index(reported['source']) + 1}]",
        measured_cell(row),
    ]


def measured_cell(row: dict) -> str:
    """'fid 71.25 (120 images) †' (the number of images it rests on; the dagger: not the paper's protocol), or
    '-'."""
    metric = row["measured_headline"]
    if metric is None:
        return "-"
    measured = row["measured"][metric]
    value = measured["value"]  # "inf" for the PSNR of identical images
    images = measured["protocol"].get("images")
    return f"{metric} {value if isinstance(value, str) else f'{value:.4g}'}" + (
        f" ({images} images)" if images else "") + (" †" if measured["protocol_differs"] else "")


def notes(board: dict, footnotes: list[str]) -> list[str]:
    """The caption under the table: where it was measured, what the columns mean, the sources."""
    return [
        f"Measured here: {board['cpu']}, {board['threads']} threads, torch {board['torch_version']}, "
        f"gzoo {board['gzoo_version']}; CPU ms: {board['latency']} (~ not settled: the median did not settle or "
        "the runs spread over 10%; such a timing is not cached, and `--remeasure` times every one again). "
        "MACs paper: the torchprofile convention the papers published. 'not measurable yet': the exact "
        "architecture is unknown (e.g. widths found by pruning). 'measured': the newest value in the results "
        f"store {board['results_store']}; † measured under another protocol than the paper's, so not comparable "
        "with 'reported' (--format json shows both protocols). 'reported' values are published numbers, "
        "not measured here:",
        *(f"[{i}] {source}" for i, source in enumerate(footnotes, 1)),
    ]


def to_markdown(board: dict) -> str:
    footnotes = sources(board["rows"])
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row, footnotes)) + " |" for row in board["rows"]]
    return "\n".join(lines) + "\n\n" + "\n".join(notes(board, footnotes)) + "\n"


def to_csv(board: dict) -> str:
    """One line per row; the measured columns hold the row's headline metric."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in board["rows"]:
        reported = row["reported"] or {}
        measured = row["measured"].get(row["measured_headline"], {})
        writer.writerow({**row, "reported_metric": reported.get("metric"), "reported_value": reported.get("value"),
                         "reported_source": reported.get("source"), "measured_metric": row["measured_headline"],
                         "measured_value": measured.get("value"),
                         "measured_protocol_differs": measured.get("protocol_differs")})
    return buffer.getvalue()



# Counts the papers published beside their metric, checked against gzoo's count of the same architecture.
COUNTED = {"params": "params", "macs_paper": "MACs (paper convention)"}
COUNT_TOLERANCE = 0.01  # torchprofile versions differ by about 1% in how they count norms (REFERENCE.md)


def reproduces(published: float, counted: float) -> bool:
    """Whether ``counted`` rounds to the ``published`` figure as printed (0.867e6: three digits) or lies within
    COUNT_TOLERANCE of it."""
    digits = f"{published:.15e}".split("e")
    significant = len(digits[0].replace(".", "").replace("-", "").rstrip("0")) or 1
    half_unit = 10 ** (int(digits[1]) - significant + 1) / 2
    return abs(counted - published) <= max(half_unit, COUNT_TOLERANCE * abs(published))


def unreproduced(rows: list[dict]) -> list[dict]:
    """The published params and MACs that gzoo's count of the same architecture does not reproduce:
    ``{"id", "metric", "label", "published", "counted", "source"}`` each."""
    found = []
    for row in rows:
        for published in row.get("reported_all", []):
            counted = row.get(published["metric"]) if published["metric"] in COUNTED else None
            if counted is not None and not reproduces(published["value"], counted):
                found.append({"id": row["id"], "metric": published["metric"], "label": COUNTED[published["metric"]],
                              "published": published["value"], "counted": counted, "source": published["source"]})
    return found


def unreproduced_line(item: dict) -> str:
    """'fast-gan-compression/cityscapes: params published 867K (GAN Compression README), counted 886.31K (+2.2%)'."""
    change = (item["counted"] - item["published"]) / item["published"]
    return (f"{item['id']}: {item['label']} published {compact(item['published'])} ({item['source']}), "
            f"counted {human(item['counted'])} ({change:+.1%})")
