"""The reports on the command line: `gzoo leaderboard -o FILE --plot FILE` (checked in headless Chromium), bad
outputs refused before measuring, and `gzoo results export`."""

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from boards import Page
from test_cli import SMALL_ZOO, assert_one_line_error


@pytest.fixture(scope="module")
def small_zoo_figures(tmp_path_factory) -> Path:
    """The small zoo's figures.json, measured once for this module's tests: MACs and params counted, latencies
    stubbed as settled timings (one per parameter count), so that every later run reads them all from the cache.
    A real timing that did not settle would be timed again, and two pages of the same board would differ."""
    from gzoo import api, metrics
    from gzoo.metrics.latency import Latency

    def measure_latency(model, example, **protocol):
        milliseconds = 1 + sum(p.numel() for p in model.parameters()) / 1e5
        return Latency(milliseconds, 0.01 * milliseconds, 10, 1, 2, 1, stable=True, spread=0.01)

    home = tmp_path_factory.mktemp("report-figures")
    (home / "zoo.yaml").write_text(SMALL_ZOO)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GZOO_HOME", str(home))
        patch.setenv("GZOO_ZOO", str(home / "zoo.yaml"))
        patch.setattr(metrics, "measure_latency", measure_latency)
        api.leaderboard()
    return home / "figures.json"


@pytest.fixture
def zoo(tmp_path, gzoo_home, small_zoo_figures) -> Path:
    """test_cli's small zoo, its figures already in this test's own GZOO_HOME (whose results store is empty)."""
    import shutil

    gzoo_home.mkdir(exist_ok=True)
    shutil.copy(small_zoo_figures, gzoo_home / "figures.json")
    path = tmp_path / "zoo.yaml"
    path.write_text(SMALL_ZOO)
    return path


def test_leaderboard_writes_the_page_and_the_plot(run_gzoo, zoo, tmp_path):
    page, picture = tmp_path / "board.html", tmp_path / "board.svg"
    result = run_gzoo("leaderboard", "-o", str(page), "--plot", str(picture), zoo=zoo)  # html from the suffix
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and f"wrote {page}" in result.stderr and f"wrote {picture}" in result.stderr
    text = page.read_text()
    board = json.loads(run_gzoo("leaderboard", "--format", "json", zoo=zoo).stdout)
    assert [row[0]["text"] for row in Page(text).rows] == [r["id"] for r in board["rows"]]
    # One task has a quality metric (horse2zebra's FID): the plot is the file named, and the page says which
    # task is not plotted.
    assert text.count("<figure class='plot'") == 1 and "Not plotted" in text and "style-transfer" in text
    assert picture.read_bytes().startswith(b"<?xml") and "horse2zebra: FID" in picture.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.html", "board.svg", "gzoo-home", "zoo.yaml"]

    # The JSON document carries all the page needs: rendered elsewhere from it, the table is the same.
    from gzoo.report import html

    saved = tmp_path / "board.json"
    assert run_gzoo("leaderboard", "-o", str(saved), zoo=zoo).returncode == 0
    rebuilt = html.page(json.loads(saved.read_text()))
    assert rebuilt.split("<tbody>")[1].split("</tbody>")[0] == text.split("<tbody>")[1].split("</tbody>")[0]
    saved.unlink()

    table = tmp_path / "board.txt"
    assert run_gzoo("leaderboard", "-o", str(table), zoo=zoo).returncode == 0
    assert "gan-compression/horse2zebra" in table.read_text() and "\x1b[" not in table.read_text()
    csv_rows = list(csv.DictReader(io.StringIO(run_gzoo("leaderboard", "--format", "csv", zoo=zoo).stdout)))
    assert [r["id"] for r in csv_rows] == [r["id"] for r in board["rows"]]


@pytest.mark.parametrize("arguments, fragments", [
    (["-o", "{tmp}/missing/board.html"], ["cannot write", "missing/board.html", "does not exist"]),
    (["--plot", "{tmp}/missing/board.png"], ["the folder", "missing", "does not exist"]),
    (["--format", "xml", "-o", "{tmp}/board.xml"], ["unknown format 'xml'", "table, md, csv, json, html"]),
    (["--plot", "{tmp}/board.docx"], ["cannot plot to", "board.docx", "png"]),
    (["--plot", "{tmp}"], ["is a folder"]),
])
def test_bad_outputs_are_refused_before_measuring(run_gzoo, tmp_path, arguments, fragments):
    # Measuring this zoo would fail (an unknown architecture argument): the output's error comes first.
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(SMALL_ZOO.replace("arch_args: {ngf: 16}", "arch_args: {ngf: 16, blocks: 9}"))
    result = run_gzoo("leaderboard", *(a.format(tmp=tmp_path) for a in arguments), zoo=zoo)
    assert_one_line_error(result, *fragments)
    assert {p.name for p in tmp_path.iterdir()} <= {"gzoo-home", "zoo.yaml"}  # nothing written


def test_a_board_without_a_quality_metric_has_nothing_to_plot(run_gzoo, zoo, tmp_path):
    result = run_gzoo("leaderboard", "--task", "style-transfer", "-o", str(tmp_path / "board.md"), "--plot",
                      str(tmp_path / "board.png"), zoo=zoo)
    assert_one_line_error(result, "nothing to plot", "fid, miou, top1")
    assert {p.name for p in tmp_path.iterdir()} == {"gzoo-home", "zoo.yaml"}  # not the markdown either


def test_without_matplotlib_the_plot_is_a_one_line_hint_and_the_page_says_so(zoo, tmp_path, gzoo_home):
    import os

    blocked = ("import sys; sys.modules['matplotlib'] = None; sys.argv[0] = 'gzoo'; "
               "from gzoo.cli import main; main()")
    env = {**os.environ, "GZOO_ZOO": str(zoo), "GZOO_HOME": str(gzoo_home)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", blocked, *args], capture_output=True, text=True, env=env,
                              timeout=300)

    assert_one_line_error(run("leaderboard", "--plot", str(tmp_path / "board.png")),
                          "plots need matplotlib", "pip install 'gzoo[plot]'")
    result = run("leaderboard", "--format", "html")
    assert result.returncode == 0, result.stderr
    assert "need matplotlib: pip install &#x27;gzoo[plot]&#x27;" in result.stdout and "<svg" not in result.stdout


def test_results_export_holds_every_result_with_its_provenance(run_gzoo, tmp_path):
    from gzoo.results import Result, record

    record([Result("gan-compression/horse2zebra", "fid", 71.3, {"name": "FID; reference: testB", "images": 120},
                   "cpu: Test CPU", weights_sha256="ab" * 32, dataset="/data/testB", dataset_sha256="cd" * 32,
                   date="2024-05-01T12:00:00Z"),
            Result("gan-compression/horse2zebra", "fid", 70.0, {"name": "FID; reference: testB", "images": 60},
                   "NVIDIA H100", date="2024-06-01T12:00:00Z"),
            Result("/runs/student", "psnr", math.inf, {"name": "PSNR to the teacher's outputs"}, "cpu: Test CPU")])
    document = json.loads(run_gzoo("results", "export").stdout)
    assert document["results_store"].endswith("results.sqlite")
    first, second, third = document["results"]
    assert first == {"model_id": "gan-compression/horse2zebra", "metric": "fid", "value": 71.3,
                     "protocol": {"name": "FID; reference: testB", "images": 120}, "device": "cpu: Test CPU",
                     "weights_sha256": "ab" * 32, "dataset": "/data/testB", "dataset_sha256": "cd" * 32,
                     "gzoo_version": "0.1.0", "torch_version": first["torch_version"],
                     "date": "2024-05-01T12:00:00.000000+00:00"}
    assert second["value"] == 70.0 and second["device"] == "NVIDIA H100" and third["value"] == "inf"

    out = tmp_path / "results.csv"
    result = run_gzoo("results", "export", "--format", "csv", "-o", str(out))
    assert result.returncode == 0 and result.stdout == "" and "3 results" in result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["model_id"], r["value"], r["protocol_name"]) for r in rows] == [
        ("gan-compression/horse2zebra", "71.3", "FID; reference: testB"),
        ("gan-compression/horse2zebra", "70.0", "FID; reference: testB"), ("/runs/student", "inf",
                                                                            "PSNR to the teacher's outputs")]
    assert json.loads(rows[1]["protocol"]) == {"name": "FID; reference: testB", "images": 60}
    only = json.loads(run_gzoo("results", "export", "--model", "/runs/student").stdout)["results"]
    assert [r["metric"] for r in only] == ["psnr"]
    assert_one_line_error(run_gzoo("results", "export", "--format", "xml"), "unknown format 'xml'", "json, csv")


# --- in a real browser ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    from browser import find_chromium

    found = find_chromium()
    if isinstance(found, str):
        pytest.skip(f"no headless Chromium: {found}")
    return found


def test_the_page_renders_sorts_filters_and_expands_in_headless_chromium(run_gzoo, zoo, tmp_path, chromium):
    from browser import ARTIFACTS, headless_chromium
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from gzoo.results import Result, record

    student = "gan-compression/horse2zebra"
    record([Result(student, "fid", 71.3, {"name": "FID; reference: 120 test zebra (B) images", "images": 120},
                   "cpu: Test CPU", weights_sha256="ab" * 32, dataset="/data/testB", date="2024-05-01T12:00:00Z")])
    page = tmp_path / "board.html"
    assert run_gzoo("leaderboard", "--format", "html", "-o", str(page), zoo=zoo).returncode == 0
    rows = json.loads(run_gzoo("leaderboard", "--format", "json", zoo=zoo).stdout)["rows"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = headless_chromium(*chromium, width=1400, height=900)
    try:
        driver.get(page.as_uri())
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0  # no fetches

        def shown() -> list[str]:
            return [row.get_attribute("data-id") for row in driver.find_elements(By.CSS_SELECTOR, "#board tbody tr")
                    if row.is_displayed()]

        assert shown() == [r["id"] for r in rows]
        for row in rows:  # each row's id, as text on screen
            cell = driver.find_element(By.CSS_SELECTOR, f"#board tbody tr[data-id='{row['id']}'] th")
            assert cell.text == row["id"] and cell.size["height"] > 0

        header = driver.find_element(By.XPATH, "//thead//th[normalize-space(.)='params']")
        measured = sorted((r for r in rows if r["params"] is not None), key=lambda r: r["params"])
        blank = [r["id"] for r in rows if r["params"] is None]  # not measurable: last either way
        header.find_element(By.TAG_NAME, "button").click()
        assert shown() == [r["id"] for r in measured] + blank and header.get_attribute("aria-sort") == "ascending"
        header.find_element(By.TAG_NAME, "button").click()
        descending = [r["id"] for r in reversed(measured)] + blank
        assert shown() == descending and header.get_attribute("aria-sort") == "descending"
        assert len(driver.find_elements(By.CSS_SELECTOR, "thead th[aria-sort]")) == 1

        provenance = driver.find_element(By.CSS_SELECTOR, f"tr[data-id='{student}'] td:last-child")
        assert provenance.find_element(By.TAG_NAME, "summary").text == "fid 71.3 (120 images) †"
        lines = provenance.find_element(By.TAG_NAME, "ul")
        assert not lines.is_displayed()
        provenance.find_element(By.TAG_NAME, "summary").click()
        assert lines.is_displayed() and "images: 120" in lines.text and "device: cpu: Test CPU" in lines.text
        driver.save_screenshot(str(ARTIFACTS / "leaderboard-sorted.png"))

        Select(driver.find_element(By.ID, "filter-task")).select_by_value("horse2zebra")
        assert shown() == [i for i in descending if i.endswith(("horse2zebra", "horse2zebra-pruned"))]
        assert "fritz/small-a030" not in shown() and len(shown()) == 3
        assert driver.find_element(By.ID, "shown").text == f"3 of {len(rows)} rows"
        Select(driver.find_element(By.ID, "filter-method")).select_by_value("gan-compression")
        assert shown() == [student, "gan-compression/horse2zebra-pruned"]
        driver.save_screenshot(str(ARTIFACTS / "leaderboard-filtered.png"))
    finally:
        driver.quit()
    from PIL import Image

    with Image.open(ARTIFACTS / "leaderboard-filtered.png") as shot:
        assert shot.size[0] == 1400 and len(shot.getcolors(1 << 16) or range(1 << 16)) > 16  # a page, not blank
