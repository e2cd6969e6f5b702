"""The `gzoo` command line: parse, call gzoo.api, render with rich. No logic of its own."""

import csv
import io
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gzoo import __version__, api
from gzoo.errors import GzooError

app = typer.Typer(help="A model zoo and evaluation suite for compressed image-to-image generators.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
stdout = Console()
stderr = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
MethodOption = Annotated[str | None, typer.Option("--method", help="Only entries of this method.")]
TaskOption = Annotated[str | None, typer.Option("--task", help="Only entries of this task.")]


class Format(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


def human(value: float | None, digits: int = 2) -> str:
    """11378179 -> 11.38M; None -> '-'."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{unit}"
    return f"{value:g}"


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _print_version(value: bool) -> None:
    if value:
        stdout.print(f"gzoo {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    show_version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                               callback=_print_version, is_eager=True)] = False,
) -> None:
    _State.debug = debug


class _State:
    debug = False


@app.command("list")
def list_command(method: MethodOption = None, task: TaskOption = None, as_json: JsonOption = False,
                 archs: Annotated[bool, typer.Option("--archs", help="List registered architectures.")] = False,
                 ) -> None:
    """List the zoo's models (or, with --archs, the registered architectures)."""
    if archs:
        from gzoo.models import architecture_arguments, list_architectures

        catalogue = {name: architecture_arguments(name) for name in list_architectures()}
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
    table = Table("id", "method", "task", "arch", "params", "MACs (paper)", "teacher")
    for m in models:
        table.add_row(m["id"], m["method"], m["task"], m["arch"], human(m["params"]), human(m["macs_paper"]),
                      m["teacher"] or "-")
    stdout.print(table)


@app.command()
def info(model_id: Annotated[str, typer.Argument(help="A zoo id (e.g. gan-compression/horse2zebra) or a "
                                                      "model directory.")],
         as_json: JsonOption = False) -> None:
    """Describe a zoo entry or a model directory: architecture, input, weights, published numbers, figures."""
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


@app.command()
def leaderboard(method: MethodOption = None, task: TaskOption = None,
                output_format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
                ) -> None:
    """Measure every zoo entry on this machine and show it beside the published numbers."""
    with progress_bar("measuring") as advance:
        board = api.leaderboard(method, task, progress=advance)
    if output_format is Format.json:
        print_json(board)
    elif output_format is Format.csv:
        sys.stdout.write(_csv(board["rows"]))
    elif output_format is Format.md:
        sys.stdout.write(_markdown(board))
    else:
        _rich_table(board)


RUNTIME_NAMES = {"eager": "eager PyTorch", "onnxruntime": "ONNX Runtime"}


@app.command()
def bench(model: Annotated[str, typer.Argument(help="A zoo id (its architecture, random weights) or a model "
                                                   "directory.")],
          vs: Annotated[str | None, typer.Option("--vs", help="A second model, timed in alternating turns.")] = None,
          runtime: Annotated[str, typer.Option(help="eager or onnxruntime.")] = "eager",
          threads: Annotated[int | None, typer.Option(help="CPU threads (default: one per core).")] = None,
          batch: Annotated[int, typer.Option(help="Images per pass.")] = 1,
          runs: Annotated[int, typer.Option(help="Timed passes per model.")] = 10,
          as_json: JsonOption = False) -> None:
    """Time a model on the CPU (median of timed passes, peak memory); with --vs, compare two in one run."""
    with progress_bar("") as advance:
        result = api.bench(model, vs, runtime, threads, batch, runs, progress=advance)
    if as_json:
        print_json(result)
        return
    console = _wide_console()
    console.print(f"{RUNTIME_NAMES[result['runtime']]}, {result['cpu']}, {result['threads']} threads, "
                  f"batch {result['batch']}, median of {result['runs']} timed passes"
                  + (" in alternating turns" if vs else ""), highlight=False, markup=False)
    table = Table("model", "weights", "input", "median ms", "IQR ms", "peak memory MB")
    for m in result["models"]:
        memory = "-" if m["peak_memory_mb"] is None else f"{m['peak_memory_mb']:.1f}"
        table.add_row(escape(m["model"]), m["weights"], m["input"], f"{m['median_ms']:.2f}", f"{m['iqr_ms']:.2f}",
                      memory)
    console.print(table)
    if result["ratio"] is not None:
        a, b = (m["model"] for m in result["models"])
        faster, slower, ratio = (a, b, result["ratio"]) if result["ratio"] >= 1 else (b, a, 1 / result["ratio"])
        console.print(f"{faster} is {ratio:.1f}x faster than {slower}", highlight=False, markup=False)


@app.command()
def fid(first: Annotated[Path, typer.Argument(help="A folder of images (e.g. generated).")],
        second: Annotated[Path, typer.Argument(help="Another folder of images (e.g. real), or an .npz of reference "
                                                    "statistics (mu, sigma) as GAN Compression ships them.")],
        with_kid: Annotated[bool, typer.Option("--kid", help="Also compute KID (needs two folders).")] = False,
        kid_subset_size: Annotated[int | None, typer.Option(help="KID subset size [default: 1000, or the smaller "
                                                                  "set's size]")] = None,
        kid_subsets: Annotated[int, typer.Option(help="KID subsets.")] = 100,
        batch_size: Annotated[int, typer.Option(help="Images per Inception batch.")] = 32,
        inception_weights: Annotated[Path | None, typer.Option(help="torch-fidelity Inception weights file "
                                                                    "[default: found offline, see README]")] = None,
        as_json: JsonOption = False) -> None:
    """FID (and KID) between two image folders, with the standard Inception of torch-fidelity."""
    with progress_bar("Inception features") as advance:
        result = api.fid(first, second, with_kid, kid_subset_size, kid_subsets, batch_size,
                         str(inception_weights) if inception_weights else None, progress=advance)
    if as_json:
        print_json(result)
        return
    stdout.print(f"FID {result['fid']:.4f}", highlight=False)
    if with_kid:
        stdout.print(f"KID {result['kid_mean']:.6f} ± {result['kid_std']:.6f} "
                     f"({result['kid_subsets']} subsets of {result['kid_subset_size']})", highlight=False)
    for side in result["inputs"]:
        if "images" in side:
            cached = ", features cached" if side["features_cached"] else ""
            skipped = f", {side['skipped']} non-image files skipped" if side["skipped"] else ""
            stderr.print(f"{side['path']}: {side['images']} images {side['size']}{skipped}{cached}", highlight=False)
    stderr.print(f"Inception weights: {result['inception']['source']} ({result['inception']['path']})",
                 highlight=False)


@app.command("eval")
def eval_command(
        model: Annotated[str, typer.Argument(help="A zoo id or a model directory.")],
        data: Annotated[Path, typer.Option("--data", help="Dataset folder: A|B pairs, testA/testB folders, or a "
                                                          "folder of images; class folders for classifiers.")],
        metrics: Annotated[str | None, typer.Option(help="Comma-separated: fid,kid,psnr,ssim,miou,latency "
                                                         "(generators), top1,top5,latency (classifiers) "
                                                         "[default: every one the data allows]")] = None,
        teacher: Annotated[str | None, typer.Option(help="Teacher (zoo id or directory) for PSNR/SSIM "
                                                         "[default: the model's own]")] = None,
        reference: Annotated[Path | None, typer.Option(help="FID/KID reference: a folder of real images or an "
                                                            ".npz (mu, sigma) [default: the data's targets, "
                                                            "else the teacher's outputs]")] = None,
        mode: Annotated[str, typer.Option(help="auto, paired, unpaired or single.")] = "auto",
        direction: Annotated[str, typer.Option(help="AtoB or BtoA.")] = "AtoB",
        batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 8,
        max_images: Annotated[int | None, typer.Option(help="Only the first N inputs.")] = None,
        save_images: Annotated[Path | None, typer.Option(help="Write the generated images here.")] = None,
        kid_subset_size: Annotated[int | None, typer.Option(help="KID subset size.")] = None,
        inception_weights: Annotated[str | None, typer.Option(help="torch-fidelity Inception weights file.")] = None,
        threads: Annotated[int | None, typer.Option(help="CPU threads for the latency.")] = None,
        segmenter: Annotated[Path | None, typer.Option(help="mIoU: DRN-D-105 Cityscapes weights "
                                                            "(drn-d-105_ms_cityscapes.pth).")] = None,
        labels: Annotated[Path | None, typer.Option(help="mIoU: train-id label maps named like the inputs "
                                                         "(stem.png).")] = None,
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not write to the results store.")] = False,
        as_json: JsonOption = False) -> None:
    """Measure a model on a dataset (FID, KID, PSNR/SSIM against its teacher, top-1, latency) and store it."""
    with progress_bar("evaluating") as advance:
        result = api.evaluate(model, data, metrics.split(",") if metrics else None, teacher, progress=advance,
                              store=not no_store, mode=mode, direction=direction, reference=reference,
                              batch_size=batch_size, max_images=max_images, save_images=save_images,
                              kid_subset_size=kid_subset_size, inception_weights=inception_weights,
                              threads=threads, segmenter=segmenter, labels=labels)
    if as_json:
        print_json(result)
        return
    table = Table("metric", "value", "protocol", title=f"{result['model']} on {result['data']}")
    for metric, value in result["metrics"].items():
        shown = value if isinstance(value, str) else f"{value:.4f}"
        table.add_row(metric, shown, result["protocols"][metric]["name"])
    stdout.print(table)
    if result["stored"]:
        stderr.print("stored in the results store; `gzoo leaderboard` shows the latest values", highlight=False)


@app.command()
def pull(model_id: Annotated[str, typer.Argument(help="A zoo id with published weights.")],
         revision: Annotated[str | None, typer.Option(help="Hub revision (default: the one zoo.yaml pins).")] = None,
         ) -> None:
    """Download an entry's weights (sha256-verified) and convert them into a gzoo model directory."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        directory = api.pull(model_id, revision)
    for warning in caught:
        stderr.print(f"gzoo: warning: {warning.message}", highlight=False, markup=False)
    stdout.print(str(directory), highlight=False)


@app.command()
def push(directory: Annotated[Path, typer.Argument(help="A gzoo model directory.")],
         repo_id: Annotated[str, typer.Argument(help="The Hub model repository, e.g. user/horse2zebra-small.")],
         private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
         revision: Annotated[str | None, typer.Option(help="Branch to commit to, created if missing "
                                                           "(default: main).")] = None,
         as_json: JsonOption = False) -> None:
    """Upload a model directory to the Hugging Face Hub, its card regenerated with the measured results.

    The Hub and token are huggingface_hub's: HF_ENDPOINT, HF_TOKEN or `hf auth login`.
    """
    with progress_bar("") as advance:
        pushed = api.push(directory, repo_id, private=private, revision=revision, progress=advance)
    if as_json:
        print_json(pushed)
        return
    stdout.print(pushed["url"], highlight=False)
    stderr.print(f"committed {', '.join(pushed['files'])} to {pushed['repo_id']} as {pushed['commit']}",
                 highlight=False)


@app.command()
def compress(
        recipe: Annotated[Path, typer.Argument(help="A recipe file (see recipes/).")],
        teacher: Annotated[str | None, typer.Option(help="The teacher: zoo id or model directory "
                                                         "(default: the recipe's).")] = None,
        data: Annotated[Path | None, typer.Option(help="The dataset folder (default: the recipe's).")] = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Run directory "
                                                    "(default: runs/<recipe name>).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run in the run directory.")] = False,
        overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe value: "
                                                            "section.key=value (repeatable).")] = None,
        as_json: JsonOption = False) -> None:
    """Compress a teacher with a recipe: train, search, fine-tune, export and evaluate the student."""
    with progress_bar("") as advance:
        shown = {"stage": None}

        def report(stage: str, done: int, total: int, losses: dict[str, float]) -> None:
            if stage != shown["stage"]:
                shown["stage"] = stage
                stderr.print(f"stage {stage}", highlight=False)
            advance(done, total, " ".join([stage, *(f"{k} {v:.3g}" for k, v in losses.items())]))

        summary = api.compress(recipe, teacher, data, output, resume, overrides or [], progress=report)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun the first process reports
    if as_json:
        print_json(summary)
        return
    table = Table("", "value", title=f"student {summary['config']} in {summary['student']}")
    table.add_row(f"MACs (paper convention, {summary['macs_input']})",
                  f"{human(summary['teacher_macs_paper'])} -> {human(summary['student_macs_paper'])} "
                  f"({summary['macs_reduction']:.1f}x fewer)")
    for metric, value in summary["metrics"].items():
        table.add_row(f"{metric} (held-out)", value if isinstance(value, str) else f"{value:.4f}")
    if "identity_psnr" in summary:
        table.add_row("psnr of the input itself (identity baseline)", f"{summary['identity_psnr']:.4f}")
    stdout.print(table)
    stderr.print("stored in the results store; `gzoo leaderboard` shows it", highlight=False)


@app.command()
def convert(source: Annotated[Path, typer.Argument(help="The original checkpoint file.")],
            fmt: Annotated[str, typer.Option("--from", help="Its format (listed above).")],
            output: Annotated[Path, typer.Option("-o", "--output", help="The model directory to write.")],
            arch: Annotated[str | None, typer.Option(help="Architecture, where the format cannot tell.")] = None,
            arch_args: Annotated[str | None, typer.Option("--arch-args", help='JSON, e.g. \'{"ngf": 16}\'.')] = None,
            config: Annotated[str | None, typer.Option(help="GAN Compression config string, e.g. "
                                                            "16_16_32_16_32_32_16_16.")] = None,
            ) -> None:
    """Convert an original checkpoint (gan-compression, omgd, cat, kill-the-bits, vintagify, onnx-style,
    state-dict) into a gzoo model directory."""
    try:
        args = json.loads(arch_args) if arch_args else {}
    except ValueError as err:
        raise GzooError(f"--arch-args is not valid JSON ({err}); write it like '{{\"ngf\": 16}}'") from None
    if not isinstance(args, dict):
        raise GzooError("--arch-args must be a JSON object like '{\"ngf\": 16}'")
    if config:
        args["config"] = config
    stdout.print(str(api.convert(source, fmt, output, arch, args)), highlight=False)


zoo_app = typer.Typer(help="Maintainer commands for zoo.yaml.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("pin")
def zoo_pin(model_id: Annotated[str, typer.Argument(help="The entry whose weights to pin.")]) -> None:
    """Resolve an entry's revision to a commit and record it with the file's sha256 in zoo.yaml (online)."""
    pinned = api.pin(model_id)
    stdout.print(f"{model_id}: " + ", ".join(f"{k} {v}" for k, v in pinned.items()), highlight=False)


COLUMNS = ("id", "method", "task", "input", "params", "MACs", "MACs paper", "CPU ms", "MACs ÷ teacher",
           "speed-up", "reported", "measured")


def _sources(rows: list[dict]) -> list[str]:
    """Each distinct source of a reported number, in order of first use (footnotes [1], [2], ...)."""
    sources: list[str] = []
    for row in rows:
        if row["reported"] and row["reported"]["source"] not in sources:
            sources.append(row["reported"]["source"])
    return sources


def _cells(row: dict, sources: list[str]) -> list[str]:
    reported = row["reported"]
    if not row["measurable"]:
        macs_paper = f"{human(row['reported_macs_paper'])} reported" if row["reported_macs_paper"] else "-"
        latency = "not measurable yet"
    else:
        macs_paper = human(row["macs_paper"])
        latency = f"{row['latency_ms']:.1f}" + ("*" if row["latency_runs"] < 3 else "")
    return [
        row["id"], row["method"], row["task"], row["input"], human(row["params"]), human(row["macs"]),
        macs_paper, latency,
        "-" if row["macs_reduction"] is None else f"{row['macs_reduction']:.1f}x",
        "-" if row["latency_speedup"] is None else f"{row['latency_speedup']:.1f}x",
        "-" if reported is None else
        f"{reported['metric']} {reported['value']:g} [{sources.index(reported['source']) + 1}]",
        _measured_cell(row),
    ]


def _measured_cell(row: dict) -> str:
    """'fid 71.25 †' (the dagger: not the paper's protocol), or '-'."""
    metric = row["measured_headline"]
    if metric is None:
        return "-"
    measured = row["measured"][metric]
    value = measured["value"]  # "inf" for the PSNR of identical images
    return f"{metric} {value if isinstance(value, str) else f'{value:.4g}'}" + (
        " †" if measured["protocol_differs"] else "")


def _notes(board: dict, sources: list[str]) -> list[str]:
    return [
        f"Measured here: {board['cpu']}, {board['threads']} threads, torch {board['torch_version']}, "
        f"gzoo {board['gzoo_version']}; CPU ms: {board['latency']} (* fewer than 3 timed runs: a heavy model). "
        "MACs paper: the torchprofile convention the papers published. 'not measurable yet': the exact "
        "architecture is unknown (e.g. widths found by pruning). 'measured': the newest value in the results "
        f"store {board['results_store']}; † measured under another protocol than the paper's, so not comparable "
        "with 'reported' (--format json shows both protocols). 'reported' values are published numbers, "
        "not measured here:",
        *(f"[{i}] {source}" for i, source in enumerate(sources, 1)),
    ]


def _rich_table(board: dict) -> None:
    sources = _sources(board["rows"])
    table = Table(*COLUMNS)
    for row in board["rows"]:
        table.add_row(*_cells(row, sources))
    console = _wide_console()
    console.print(table)
    for line in _notes(board, sources):
        console.print(line, highlight=False, markup=False)


def _wide_console() -> Console:
    # Piped output has no terminal width: rich would wrap tables at 80 columns.
    return stdout if stdout.is_terminal else Console(width=200)


def _markdown(board: dict) -> str:
    sources = _sources(board["rows"])
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row, sources)) + " |" for row in board["rows"]]
    return "\n".join(lines) + "\n\n" + "\n".join(_notes(board, sources)) + "\n"


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    fields = ["id", "method", "task", "teacher", "arch", "input", "params", "macs", "macs_paper", "latency_ms",
              "latency_iqr_ms", "reported_metric", "reported_value", "reported_source", "measured_metric",
              "measured_value", "measured_protocol_differs", "macs_reduction", "latency_speedup"]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        reported = row["reported"] or {}
        measured = row["measured"].get(row["measured_headline"], {})
        writer.writerow({**row, "reported_metric": reported.get("metric"), "reported_value": reported.get("value"),
                         "reported_source": reported.get("source"), "measured_metric": row["measured_headline"],
                         "measured_value": measured.get("value"),
                         "measured_protocol_differs": measured.get("protocol_differs")})
    return buffer.getvalue()


@contextmanager
def progress_bar(description: str) -> Iterator[api.Progress]:
    """A transient rich progress bar on stderr, advanced by the API's (done, total, label) callback.

    Only on a terminal: in logs and pipes it would leave blank lines around error messages.
    """
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        job = bar.add_task(description, total=None)

        def advance(done: int, total: int, label: str) -> None:
            bar.update(job, completed=done, total=total, description=f"{description} {label}".strip())

        yield advance


def main() -> None:
    """Entry point: run the app; a GzooError becomes one line on stderr and its exit code."""
    try:
        app()  # click handles its own usage errors (exit 2) and exits 0 on success
    except GzooError as err:
        if _State.debug:
            raise
        stderr.print(f"gzoo: error: {err}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(err.exit_code)
