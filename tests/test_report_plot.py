"""The plots of quality against cost: one figure per task, log cost axes, arrows, the Pareto front, and labels
that overlap nothing."""

from pathlib import Path

import pytest
from boards import make_board, make_row, measurement

from gzoo.report import plot


def test_the_pareto_front_keeps_only_unbeaten_points():
    pairs = [(1.0, 60.0), (2.0, 55.0), (3.0, 62.0), (0.5, 70.0), (2.0, 58.0)]
    assert plot.pareto_front(pairs, higher_is_better=False) == [3, 0, 1]  # lower FID is better
    assert plot.pareto_front(pairs, higher_is_better=True) == [3]  # the cheapest is also the best


def test_each_task_plots_the_metric_most_of_its_entries_report():
    rows = [make_row("original/cityscapes", reported={"fid": 57.6, "miou": 61.04}),
            make_row("gan-compression/cityscapes", reported={"miou": 60.29}),
            make_row("fritz/style", reported={"size_bytes": 17e3})]
    assert plot.plot_metric(rows[:2]) == "miou" and plot.plot_metric(rows[2:]) is None
    measured_only = [make_row("community/vintage", measured={"psnr": measurement(24.5, "PSNR", None)})]
    assert plot.plot_metric(measured_only) == "psnr"


def test_one_figure_per_task_with_log_costs_arrows_and_legend(board):
    figures = dict(plot.task_figures(board))
    assert list(figures) == ["horse2zebra", "cityscapes"]
    horse = figures["horse2zebra"]
    macs_panel, latency_panel = horse.axes
    assert macs_panel.get_xscale() == latency_panel.get_xscale() == "log"
    assert "FID" in macs_panel.get_ylabel() and "CPU ms" in latency_panel.get_xlabel()
    arrows = [a for a in macs_panel.texts if a.get_text() == "" and a.arrow_patch is not None]
    assert len(arrows) == 3  # the teacher to each of its three students (CAT at its published MACs)
    assert len([a for a in latency_panel.texts if a.get_text() == "" and a.arrow_patch is not None]) == 2
    labels = {t.get_text() for t in macs_panel.texts if t.get_gid() == "point-label"}
    assert labels == {"original", "gan-compression", "fast-gan-compression", "cat"}
    hollow = [c for c in macs_panel.collections if len(c.get_facecolor()) == 0 and len(c.get_offsets())]
    assert len(hollow) == 1 and tuple(hollow[0].get_offsets()[0]) == (2.55e9, 71.3)  # the measured FID
    legend = [t.get_text() for t in horse.legends[0].get_texts()]
    assert {"original", "gan-compression", "fast-gan-compression", "cat", "measured, other protocol †",
            "MACs as published (not measurable yet)", "teacher → student", "Pareto front (reported)"} <= set(legend)
    front = [line for line in macs_panel.lines if line.get_linestyle() == "--"]
    # FID: CAT (2.56G, 53.48) beats every other point but gan-compression (cheaper), so the front has two points.
    assert len(front) == 1 and list(front[0].get_xdata()) == [2.55e9, 2.56e9]


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_no_label_overlaps_another_or_leaves_its_panel():
    from matplotlib.text import Text

    # A crowded task: twelve students within a factor of two in MACs and a few FID points of each other.
    rows = [make_row("original/crowd", macs=50e9, latency=400.0, reported={"fid": 60.0})]
    rows += [make_row(f"gan-compression/crowd-student{i}", teacher="original/crowd", macs=(2 + 0.1 * i) * 1e9,
                      latency=50.0 + i, reported={"fid": 60 + (i % 4) * 0.4}) for i in range(12)]
    (_, figure), = plot.task_figures(make_board(rows))
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    for axes in figure.axes:
        labels = [t for t in axes.texts if t.get_gid() == "point-label"]
        assert len(labels) == 13
        boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text, without its leader line
        inside = axes.get_window_extent(renderer)
        for i, box in enumerate(boxes):
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            assert not any(_overlap(box, other) for other in boxes[i + 1:]), labels[i].get_text()
        ticks = [t.get_window_extent(renderer) for t in axes.get_xticklabels() if t.get_text()]
        assert not any(_overlap(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1:])


@pytest.mark.parametrize("low, high, expected", [(1.8e9, 4.1e9, ["1.5G", "2G", "3G", "5G", "7G"]),
                                                 (2e9, 60e9, ["2G", "5G", "10G", "20G", "50G", "100G"])])
def test_cost_ticks_are_distinct_and_readable(low, high, expected):
    rows = [make_row("original/net", macs=high, latency=400.0, reported={"top1": 76.0}),
            make_row("bit-goes-down/net-small", teacher="original/net", macs=low, latency=300.0,
                     reported={"top1": 73.0})]
    (_, figure), = plot.task_figures(make_board(rows))
    figure.draw(figure.canvas.get_renderer())
    low_limit, high_limit = figure.axes[0].get_xlim()
    shown = [t.get_text() for t in figure.axes[0].get_xticklabels() if low_limit <= t.get_position()[0] <= high_limit]
    assert shown == expected


def test_plot_files_are_one_per_task_beside_the_name_given(board, tmp_path):
    files = plot.plot_files(board, tmp_path / "board.png")
    assert sorted(p.name for p in files) == ["board-cityscapes.png", "board-horse2zebra.png"]
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in files.values())
    one = make_board([r for r in board["rows"] if r["task"] == "cityscapes"])
    (path, data), = plot.plot_files(one, tmp_path / "city.svg").items()
    assert path == tmp_path / "city.svg" and b"<svg" in data and b"mIoU" not in data[:100]


def test_a_plot_file_type_matplotlib_cannot_write_is_refused():
    from gzoo.errors import GzooError

    with pytest.raises(GzooError, match=r"cannot plot to board\.docx: matplotlib writes .*png.*svg"):
        plot.check_plot_path(Path("board.docx"))
    plot.check_plot_path(Path("board.SVG"))  # any case
