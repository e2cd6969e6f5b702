"""Quality against cost, one figure per task, from the leaderboard document (matplotlib, the ``plot`` extra).

Each figure has two panels, the task's quality metric against MACs (paper convention) and against measured CPU
latency, both cost axes logarithmic: one colour per method, filled markers for reported (published) numbers and
hollow ones for measured numbers (a diamond where the measurement did not follow the paper's protocol), an arrow
from each teacher to its students, and the Pareto front of the reported numbers. Every point is labelled, and the
labels are placed so that none overlaps another label, a marker or the panel's edge.
"""

import io
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gzoo.errors import GzooError
from gzoo.report.numbers import compact

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'gzoo[plot]'"
# The quality metrics a plot can show: label, and whether higher is better. In order of preference.
QUALITY = {"fid": ("FID", False), "miou": ("mIoU", True), "top1": ("top-1 accuracy, %", True), "kid": ("KID", False),
           "psnr": ("PSNR to the teacher, dB", True), "ssim": ("SSIM to the teacher", True)}
METHODS = ("original", "gan-compression", "fast-gan-compression", "omgd", "cat", "fritz", "bit-goes-down",
           "community")  # colour order, so a method has one colour in every figure
FIGURE_SIZE = (13.0, 5.8)  # inches
PNG_DPI = 120  # 1560x696 pixels
LABEL_SIZE = 8  # points
MARKER_RADIUS = 5  # pixels at the figure's dpi, kept free of labels
LABEL_MARGIN = 2  # pixels between two labels


@dataclass(frozen=True)
class Point:
    """One leaderboard row as a plot sees it."""

    id: str
    method: str
    teacher: str | None
    label: str
    macs: float | None  # paper convention: counted, or published where the architecture is not measurable
    macs_published: bool
    latency_ms: float | None
    reported: float | None
    measured: float | None
    measured_differs: bool

    @property
    def quality(self) -> float:
        """Where the point stands on the quality axis: the reported value, else the measured one."""
        return self.reported if self.reported is not None else self.measured


def matplotlib_figure() -> type["Figure"]:
    """matplotlib's Figure class, or a one-line GzooError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise GzooError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure


def available() -> bool:
    """Whether matplotlib is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def check_plot_path(path: Path) -> None:
    """Refuse, before any measuring, a plot file whose type matplotlib cannot write (or no matplotlib)."""
    supported = matplotlib_figure()().canvas.get_supported_filetypes()
    kind = path.suffix.lstrip(".").lower()
    if kind not in supported:
        raise GzooError(f"cannot plot to {path}: matplotlib writes {', '.join(sorted(supported))} files, "
                        f"not {path.suffix or 'files without a suffix'}; name it e.g. {path.with_suffix('.png')}")


def _value(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def plot_metric(rows: list[dict]) -> str | None:
    """The quality metric most of these rows report (or, where none reports one, have measured)."""
    for source in ("reported", "measured"):
        counts = Counter(metric for row in rows for metric in _metrics(row, source) if metric in QUALITY)
        if counts:
            return max(counts, key=lambda m: (counts[m], -list(QUALITY).index(m)))
    return None


def _metrics(row: dict, source: str) -> list[str]:
    if source == "reported":
        return [r["metric"] for r in row.get("reported_all", [])]
    return [m for m, v in row["measured"].items() if _value(v["value"]) is not None]


def short_label(row: dict) -> str:
    """A point's label in its task's figure: 'gan-compression/cityscapes-gaugan' -> 'gan-compression gaugan',
    'gan-compression/edges2shoes-r' -> 'gan-compression' (a suffix of one or two letters names the dataset's
    version, not a variant)."""
    if row.get("local"):
        return Path(row["id"]).name
    method, _, name = row["id"].partition("/")
    variant = "" if name == row["task"] else name.removeprefix(row["task"] + "-")
    return f"{method} {variant}" if len(variant) > 2 else method


def task_points(rows: list[dict], metric: str) -> list[Point]:
    """The rows that have ``metric`` (reported or measured) as points; labels that would be alike are the ids."""
    points = []
    labels = Counter(short_label(row) for row in rows)
    for row in rows:
        reported = next((_value(r["value"]) for r in row.get("reported_all", []) if r["metric"] == metric), None)
        measured = row["measured"].get(metric)
        measured_value = _value(measured["value"]) if measured else None
        if reported is None and measured_value is None:
            continue
        macs = row["macs_paper"] if row["measurable"] else row.get("reported_macs_paper")
        label = short_label(row) if labels[short_label(row)] == 1 else row["id"]
        points.append(Point(row["id"], row["method"], row["teacher"], label, macs,
                            not row["measurable"], row["latency_ms"], reported, measured_value,
                            bool(measured and measured.get("protocol_differs"))))
    return points


def pareto_front(pairs: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the (cost, quality) pairs that no other pair beats (cheaper or as cheap, and at least as good,
    one of them strictly), sorted by cost."""
    sign = 1 if higher_is_better else -1

    def beaten(i: int) -> bool:
        cost, quality = pairs[i]
        return any(c <= cost and sign * q >= sign * quality and (c, q) != (cost, quality) for c, q in pairs)

    return sorted((i for i in range(len(pairs)) if not beaten(i)), key=lambda i: pairs[i])


def plotted_tasks(board: dict) -> dict[str, str]:
    """Each task of the board that has a quality metric to plot, with that metric, in the board's order."""
    tasks: dict[str, str] = {}
    for task in dict.fromkeys(row["task"] for row in board["rows"]):
        metric = plot_metric([row for row in board["rows"] if row["task"] == task])
        if metric:
            tasks[task] = metric
    return tasks


def task_figures(board: dict) -> list[tuple[str, "Figure"]]:
    """One figure per task that has a quality metric (in the board's order of tasks)."""
    figure_class = matplotlib_figure()
    methods = list(METHODS) + sorted({row["method"] for row in board["rows"]} - set(METHODS))
    figures = []
    for task, metric in plotted_tasks(board).items():
        rows = [row for row in board["rows"] if row["task"] == task]
        figures.append((task, _figure(figure_class, board, task, metric, task_points(rows, metric), methods)))
    return figures


def _colour(methods: list[str], method: str) -> tuple:
    from matplotlib import colormaps

    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]  # its grey is the legend's styles'
    return palette[methods.index(method) % len(palette)]


def _figure(figure_class: type["Figure"], board: dict, task: str, metric: str, points: list[Point],
            methods: list[str]) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.lines import Line2D

    figure = figure_class(figsize=FIGURE_SIZE, dpi=100)
    FigureCanvasAgg(figure)  # text extents need a renderer
    label, higher = QUALITY[metric]
    colours = {m: _colour(methods, m) for m in methods}
    panels = figure.subplots(1, 2, sharey=True)
    costs: list[tuple[Callable[[Point], float | None], str, Callable[[float], str]]] = [
        (lambda p: p.macs, "MACs, paper convention (log scale)", compact),
        (lambda p: p.latency_ms, "CPU ms (log scale)", lambda v: f"{v:g}")]  # the subtitle says how it was timed
    figure.suptitle(f"{task}: {label} ({'higher' if higher else 'lower'} is better) against cost", x=0.06, y=0.975,
                    ha="left", fontsize=13, fontweight="bold")
    figure.text(0.06, 0.915, f"Measured on {board['cpu']}, {board['threads']} threads, torch {board['torch_version']},"
                f" gzoo {board['gzoo_version']}; CPU ms: {board['latency']}.", fontsize=9, color="0.35")
    _quality_limits(panels[0], points, higher)
    lines = []
    for axes, (cost, xlabel, ticks) in zip(panels, costs, strict=True):
        lines.append(_panel(axes, points, cost, higher, colours, ticks))
        axes.set_xlabel(xlabel, fontsize=9)
    panels[0].set_ylabel(f"{label} {'↑' if higher else '↓'}")
    panels[0].set_title("against MACs", fontsize=10, loc="left")
    panels[1].set_title("against CPU latency", fontsize=10, loc="left")
    shown = [p for p in points if p.macs is not None or p.latency_ms is not None]
    used = [m for m in methods if any(p.method == m for p in shown)]
    handles = [Line2D([], [], ls="", marker="o", ms=7, color=colours[m], label=m) for m in used]
    fronts = any(line.get_linestyle() == "--" for axes in panels for line in axes.lines)
    handles += _style_handles(shown, fronts)
    rows = math.ceil(len(handles) / 5)
    figure.subplots_adjust(left=0.06, right=0.985, top=0.86, bottom=0.13 + 0.045 * rows, wspace=0.06)
    figure.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), frameon=False, fontsize=9,
                  bbox_to_anchor=(0.5, 0.0), handletextpad=0.4, columnspacing=1.6)
    renderer = figure.canvas.get_renderer()
    for axes, (cost, _, _), segments in zip(panels, costs, lines, strict=True):
        place_labels(axes, [(p.label, cost(p), p.quality) for p in points if cost(p) is not None], renderer,
                     segments)
    return figure


def _style_handles(points: list[Point], fronts: bool) -> list:
    from matplotlib.lines import Line2D

    grey = "0.35"
    styles = [
        (any(p.reported is not None for p in points),
         Line2D([], [], ls="", marker="o", ms=7, color=grey, label="reported (published)")),
        (any(p.measured is not None and not p.measured_differs for p in points),
         Line2D([], [], ls="", marker="o", ms=7, mfc="none", mec=grey, mew=1.5, label="measured")),
        (any(p.measured is not None and p.measured_differs for p in points),
         Line2D([], [], ls="", marker="D", ms=6, mfc="none", mec=grey, mew=1.5, label="measured, other protocol †")),
        (any(p.macs_published for p in points),
         Line2D([], [], ls="", marker="s", ms=6, color=grey, label="MACs as published (not measurable yet)")),
        (any(p.teacher in {q.id for q in points} for p in points),
         Line2D([], [], color=grey, lw=1, marker=">", markevery=[1], ms=5, label="teacher → student")),
        (fronts, Line2D([], [], color=grey, lw=1, ls="--", label="Pareto front (reported)")),
    ]
    return [handle for wanted, handle in styles if wanted]


def _quality_limits(axes: "Axes", points: list[Point], higher: bool) -> None:
    values = [v for p in points for v in (p.reported, p.measured) if v is not None]
    low, high = min(values), max(values)
    pad = (high - low) * 0.12 or abs(high) * 0.05 or 1.0
    axes.set_ylim(low - pad, high + pad)


def _log_limits(values: list[float]) -> tuple[float, float]:
    low, high = math.log10(min(values)), math.log10(max(values))
    pad = max((high - low) * 0.12, 0.25)
    return 10 ** (low - pad), 10 ** (high + pad)


Segment = tuple[tuple[float, float], tuple[float, float]]


def _panel(axes: "Axes", points: list[Point], cost: Callable[[Point], float | None], higher: bool,
           colours: dict[str, tuple], ticks: Callable[[float], str]) -> list[Segment]:
    """Draw the points, arrows and Pareto front of one panel; returns the lines drawn (data coordinates), which
    labels should keep off."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    placed = {p.id: (cost(p), p.quality) for p in points if cost(p) is not None}
    axes.set_xscale("log")
    axes.grid(True, which="major", color="0.9", lw=0.8)
    axes.set_axisbelow(True)
    if not placed:
        axes.text(0.5, 0.5, "nothing measured", transform=axes.transAxes, ha="center", color="0.5")
        return []
    low, high = _log_limits([x for x, _ in placed.values()])
    axes.set_xlim(low, high)
    decades = math.log10(high / low)
    subs = ((1.0, 2.0, 5.0) if decades > 1.2 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades > 0.6
            else (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0))
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: ticks(v)))
    axes.xaxis.set_minor_locator(NullLocator())  # the major ticks are dense enough; minor ones cost time
    segments: list[Segment] = []
    for point in points:
        x = cost(point)
        if x is None:
            continue
        colour = colours[point.method]
        if point.reported is not None:
            axes.scatter([x], [point.reported], s=48, marker="s" if point.macs_published else "o", color=colour,
                         edgecolors="white", linewidths=0.6, zorder=4)
        if point.measured is not None:
            axes.scatter([x], [point.measured], s=52, marker="D" if point.measured_differs else "o",
                         facecolors="none", edgecolors=colour, linewidths=1.5, zorder=4)
            if point.reported is not None:
                axes.plot([x, x], [point.reported, point.measured], color=colour, lw=0.8, ls=":", zorder=3)
                segments.append(((x, point.reported), (x, point.measured)))
        if point.teacher in placed:
            segments.append((placed[point.teacher], placed[point.id]))
            axes.annotate("", xy=placed[point.id], xytext=placed[point.teacher], zorder=2,
                          arrowprops={"arrowstyle": "-|>", "color": colour, "alpha": 0.5, "lw": 1.0,
                                      "shrinkA": 6, "shrinkB": 6, "mutation_scale": 10})
    reported = [(cost(p), p.reported) for p in points if cost(p) is not None and p.reported is not None]
    front = [reported[i] for i in pareto_front(reported, higher)]
    if len(front) > 1:
        axes.step([x for x, _ in front], [y for _, y in front], where="post", color="0.45", lw=1, ls="--", zorder=1)
        for (x0, y0), (x1, y1) in zip(front, front[1:], strict=False):
            segments += [((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))]
    return segments


# Where a label may go around its point, tried in this order at growing distances: right, left, the diagonals,
# above, below.
_DIRECTIONS = ((1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1))
_DISTANCES = (7, 14, 24, 36, 52, 70)  # pixels


def place_labels(axes: "Axes", items: list[tuple[str, float, float]], renderer, lines: list[Segment] = ()) -> list:
    """Label each (text, x, y) point of ``axes`` where the text overlaps no other label and no marker and stays
    inside the axes, as near its point and as clear of ``lines`` as can be; a label set further off gets a leader
    line. Returns the label artists."""
    import numpy as np

    bounds = axes.get_window_extent(renderer)
    anchors = [tuple(axes.transData.transform((x, y))) for _, x, y in items]
    r = MARKER_RADIUS
    taken = [(ax - r, ay - r, ax + r, ay + r) for ax, ay in anchors]
    samples = _samples(axes, lines)
    labels = []
    scale = 72 / axes.figure.dpi  # pixels -> points
    for (text, x, y), (ax, ay) in sorted(zip(items, anchors, strict=True), key=lambda item: item[1]):
        probe = axes.text(0, 0, text, fontsize=LABEL_SIZE)
        width, height = probe.get_window_extent(renderer).size
        probe.remove()
        best = None
        for distance in _DISTANCES:
            for dx, dy in _DIRECTIONS:
                box = _box(ax, ay, dx, dy, distance, width, height)
                hard = _overlap(box, taken) + _outside(box, bounds)
                crossed = np.count_nonzero((samples[:, 0] > box[0]) & (samples[:, 0] < box[2]) &
                                           (samples[:, 1] > box[1]) & (samples[:, 1] < box[3]))
                score = (hard > 0, hard, 3 * crossed + distance)
                if best is None or score < best[0]:
                    best = (score, dx, dy, distance, box)
        _, dx, dy, distance, box = best
        ox, oy = _offset(dx, dy, distance)
        leader = {"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 1, "shrinkB": 4}
        labels.append(axes.annotate(
            text, (x, y), xytext=(ox * scale, oy * scale), textcoords="offset points", fontsize=LABEL_SIZE,
            color="0.15", zorder=5, gid="point-label", ha={1: "left", -1: "right", 0: "center"}[dx],
            va={1: "bottom", -1: "top", 0: "center"}[dy], arrowprops=leader if distance > _DISTANCES[1] else None,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}))
        taken.append(box)
        if distance > _DISTANCES[1]:  # later labels keep off the leader line too
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            samples = np.concatenate([samples, _pixel_samples([((ax, ay), centre)])])
    return labels


def _samples(axes: "Axes", lines: list[Segment]):
    """Points every few pixels along the lines (data coordinates), in pixels: an (n, 2) array."""
    return _pixel_samples([tuple(axes.transData.transform([start, end])) for start, end in lines])


def _pixel_samples(lines: list[Segment], step: float = 3.0):
    import numpy as np

    points = [np.empty((0, 2))]
    for (x0, y0), (x1, y1) in lines:
        n = max(2, int(math.hypot(x1 - x0, y1 - y0) / step))
        points.append(np.column_stack([np.linspace(x0, x1, n), np.linspace(y0, y1, n)]))
    return np.concatenate(points)


def _offset(dx: int, dy: int, distance: float) -> tuple[float, float]:
    """A label's offset from its point in pixels: ``distance`` along (dx, dy), a little less on diagonals."""
    diagonal = 0.75 if dx and dy else 1
    return dx * distance * diagonal, dy * distance * diagonal


def _box(ax: float, ay: float, dx: int, dy: int, distance: float, width: float, height: float
         ) -> tuple[float, float, float, float]:
    """The pixel box of a label set off from its anchor (ax, ay) by ``distance`` in direction (dx, dy)."""
    ox, oy = _offset(dx, dy, distance)
    x0 = ax + ox - {1: 0, -1: width, 0: width / 2}[dx]
    y0 = ay + oy - {1: 0, -1: height, 0: height / 2}[dy]
    return x0, y0, x0 + width, y0 + height


def _overlap(box: tuple[float, float, float, float], taken: list[tuple[float, float, float, float]]) -> float:
    m = LABEL_MARGIN
    total = 0.0
    for x0, y0, x1, y1 in taken:
        w = min(box[2], x1 + m) - max(box[0], x0 - m)
        h = min(box[3], y1 + m) - max(box[1], y0 - m)
        if w > 0 and h > 0:
            total += w * h
    return total


def _outside(box: tuple[float, float, float, float], bounds) -> float:
    """How much of the box lies outside the axes (its area there, weighted up: a cut label is worst)."""
    inside_w = max(0.0, min(box[2], bounds.x1) - max(box[0], bounds.x0))
    inside_h = max(0.0, min(box[3], bounds.y1) - max(box[1], bounds.y0))
    return 10 * ((box[2] - box[0]) * (box[3] - box[1]) - inside_w * inside_h)


# --- files ---------------------------------------------------------------------------------------------------

def plot_files(board: dict, path: Path, figures: list[tuple[str, "Figure"]] | None = None) -> dict[Path, bytes]:
    """The plot files for ``path``, rendered in memory: ``path`` itself for one task, ``STEM-TASK.SUFFIX`` beside
    it for each task when the board has several. ``figures``: ``task_figures(board)``, when drawn already."""
    figures = task_figures(board) if figures is None else figures
    if not figures:
        raise GzooError("nothing to plot: no entry on this board has a quality metric ("
                        f"{', '.join(QUALITY)}) reported or measured; choose another --task or --method")
    kind = path.suffix.lstrip(".").lower()
    rendered = {}
    for task, figure in figures:
        target = path if len(figures) == 1 else path.with_name(f"{path.stem}-{_safe(task)}{path.suffix}")
        buffer = io.BytesIO()
        figure.savefig(buffer, format=kind, dpi=PNG_DPI, metadata=_metadata(kind))
        rendered[target] = buffer.getvalue()
    return rendered


def svg_plots(board: dict, figures: list[tuple[str, "Figure"]] | None = None) -> list[tuple[str, str]]:
    """(task, inline ``<svg>`` element) per plotted task, for the HTML page: its text kept as text (smaller, and
    readable by screen readers and find-in-page), in DejaVu Sans where the browser has it."""
    from matplotlib import rc_context

    plots = []
    for task, figure in task_figures(board) if figures is None else figures:
        buffer = io.StringIO()
        with rc_context({"svg.hashsalt": task, "svg.fonttype": "none"}):  # hashsalt: ids unique across figures
            figure.savefig(buffer, format="svg", metadata=_metadata("svg"))
        svg = buffer.getvalue()
        svg = svg[svg.index("<svg"):]
        plots.append((task, svg.replace("<svg ", f'<svg role="img" aria-label="{task}: quality against cost" ', 1)))
    return plots


def _metadata(kind: str) -> dict | None:
    # No creation date in the file: the same board gives the same bytes.
    return {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(kind)


def _safe(task: str) -> str:
    """A task as part of a file name; local models without a task ('-') go to STEM-no-task.SUFFIX."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in task)
    return name if any(c.isalnum() for c in name) else "no-task"
