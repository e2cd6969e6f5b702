"""What people read: no table cuts a model id at 80, 100 or 200 columns or when piped, no path is folded or
marked up, and the progress bar shows no '0/?'."""

import io
import shutil

import pytest
from rich.cells import cell_len
from rich.console import Console

from gzoo.cli.output import UNBOUNDED

WIDTHS = (80, 100, 200, UNBOUNDED)  # the last: piped output


def render(width: int, draw) -> list[str]:
    """The lines ``draw(console)`` prints on a console of ``width`` columns."""
    buffer = io.StringIO()
    draw(Console(file=buffer, width=width))
    return buffer.getvalue().splitlines()


def assert_whole(lines: list[str], values: set[str], width: int) -> None:
    """Each value (an id, a path) appears whole in some line, and only lines that are such a value alone (or a
    caption line, which the terminal wraps softly) exceed the width."""
    text = "\n".join(lines)
    for value in values:
        assert any(value in line.split() or f" {value} " in f" {line} " for line in lines), (value, width, text)
    too_wide = [line for line in lines if cell_len(line) > width and line.strip() not in values
                and not line.startswith(("Measured here", "["))]
    assert not too_wide, (width, too_wide)


@pytest.fixture
def listed(shared_home, monkeypatch):
    from gzoo import api

    monkeypatch.setenv("GZOO_HOME", str(shared_home))  # the shipped zoo's figures, counted once per session
    return api.list_models()


@pytest.mark.parametrize("width", WIDTHS)
def test_gzoo_list_never_cuts_an_id(listed, width):
    from gzoo.cli.models import LIST_COLUMNS, list_rows
    from gzoo.cli.output import print_table

    lines = render(width, lambda console: print_table(LIST_COLUMNS, list_rows(listed), console))
    ids = {m["id"] for m in listed} | {m["teacher"] for m in listed if m["teacher"]}
    assert max(map(len, ids)) > 30  # the longest ids are the hard case
    assert_whole(lines, ids, width)
    if width >= 200:  # room for the whole table, method and task included
        header = next(line for line in lines if "id" in line.split())
        assert "method" in header and "teacher" in header
    else:  # a block per model: its id alone on a line
        assert {line for line in lines if not line.startswith(" ")} == {m["id"] for m in listed}


@pytest.fixture(scope="module")
def board(tmp_path_factory, shared_home):
    """The shipped zoo's leaderboard (latencies stubbed: only the layout is tested) with a local student whose
    directory path is long."""
    from gzoo import api, metrics
    from gzoo.data.modeldir import save_model_dir
    from gzoo.metrics.latency import Latency
    from gzoo.models import create_model
    from gzoo.results import Result, record

    root = tmp_path_factory.mktemp("board")
    home = root / "home"
    home.mkdir()
    for cached in ("figures.json", "architectures.json"):
        if (shared_home / cached).is_file():
            shutil.copy(shared_home / cached, home / cached)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GZOO_HOME", str(home))
        patch.delenv("GZOO_ZOO", raising=False)
        patch.setattr(metrics, "measure_latency",
                      lambda *args, **kwargs: Latency(12.5, 0.1, 5, 1, 2, 1, stable=True, spread=0.01))
        args = {"alpha": 0.3, "n_blocks": 3, "small": True}
        student = save_model_dir(root / "runs" / "fritz-small-alpha-0.3-distilled-for-the-leaderboard" / "student",
                                 create_model("fritz_style_net", **args).state_dict(),
                                 {"arch": "fritz_style_net", "arch_args": args, "method": "fritz",
                                  "task": "style-transfer", "input": {"channels": 3, "height": 48, "width": 64}})
        record([Result(str(student.resolve()), "psnr", 31.25, {"name": "PSNR against the teacher", "images": 16},
                       "cpu: Test CPU")])
        return api.leaderboard()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_leaderboard_never_cuts_an_id_or_a_path(board, width):
    from gzoo.cli.models import print_leaderboard

    lines = render(width, lambda console: print_leaderboard(board, console))
    local = next(row["id"] for row in board["rows"] if row["local"])
    assert len(local) > 80 and len(board["rows"]) >= 40
    assert_whole(lines, {row["id"] for row in board["rows"]}, width)
    assert "psnr 31.25 (16 images)" in (" ".join(" ".join(lines).split()) if width < 200 else "\n".join(lines))
    if width == UNBOUNDED:  # piped: the whole table, one line per row
        assert sum(1 for line in lines if line.startswith("│")) == len(board["rows"])


def test_piped_gzoo_list_finds_every_horse2zebra_id(run_gzoo, shared_home):
    from gzoo.zoo import load_zoo

    result = run_gzoo("list", home=shared_home)
    assert result.returncode == 0, result.stderr
    wanted = {i for i in load_zoo().entries if "horse2zebra" in i}
    found = {word for line in result.stdout.splitlines() if "horse2zebra" in line for word in line.split()}
    assert wanted <= found
    assert max(map(len, result.stdout.splitlines())) > 80  # not cut at 80 columns


def test_printed_paths_are_never_folded_or_marked_up(tmp_path, gzoo_main):
    import torch

    from gzoo.models import create_model

    checkpoint = tmp_path / "weights.pth"
    args = {"alpha": 0.3, "n_blocks": 3, "small": True}
    torch.save(create_model("fritz_style_net", **args).state_dict(), checkpoint)
    output = tmp_path / ("a-model-directory-whose-name-is-long-enough-to-be-folded-at-eighty-columns" * 2) / "m[bold]x"
    code, out, err = gzoo_main("convert", str(checkpoint), "--from", "state-dict", "--arch", "fritz_style_net",
                               "--arch-args", '{"alpha": 0.3, "n_blocks": 3, "small": true}', "-o", str(output))
    assert (code, out) == (0, f"{output}\n"), err
    code, out, err = gzoo_main("info", str(output))
    assert code == 0 and f"  path          {output}" in out.splitlines(), out


def test_the_progress_bar_shows_no_count_before_it_knows_the_total():
    from rich.progress import Progress

    from gzoo.cli.output import _Count

    bar = Progress()
    job = bar.add_task("evaluating", total=None)
    assert _Count().render(bar.tasks[0]).plain == ""
    bar.update(job, completed=2, total=6)
    assert _Count().render(bar.tasks[0]).plain == "2/6"
