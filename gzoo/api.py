"""The Python API behind the CLI: list the zoo, describe an entry, build the leaderboard, benchmark.

Architecture figures (params, MACs, CPU latency) are measured on this machine and cached in
``$GZOO_HOME/figures.json``, keyed by architecture, arguments, input size, gzoo and torch versions
(and, for latency, the CPU and thread count), so only the first run pays for them.
"""

import json
from collections.abc import Callable
from dataclasses import replace
from functools import cache, partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gzoo import machine, results
from gzoo.errors import GzooError, closest
from gzoo.paths import atomic_write_text, gzoo_home
from gzoo.version import __version__
from gzoo.zoo import Zoo, ZooEntry, load_zoo
from gzoo.zoo.architectures import figures_digest

# The quality metric a leaderboard row shows, in order of preference.
HEADLINE_METRICS = ("fid", "miou", "top1", "kid", "psnr", "size_bytes", "fps")
Progress = Callable[[int, int, str], None]  # (done, total, label)
# A model directory's input when its config.json names none: the zoo's usual image size.
DEFAULT_INPUT = {"channels": 3, "height": 256, "width": 256}


def list_models(method: str | None = None, task: str | None = None, zoo: Zoo | None = None) -> list[dict]:
    """Every entry of a method/task with its architecture figures (params, MACs in both conventions)."""
    zoo = zoo or load_zoo()
    cache = FiguresCache()
    return [{**entry.as_dict(), **_figures(entry, cache)} for entry in zoo.select(method, task)]


def model_info(model_id: str, zoo: Zoo | None = None) -> dict:
    """One entry with its architecture figures."""
    zoo = zoo or load_zoo()
    entry = zoo.get(model_id)
    return {**entry.as_dict(), **_figures(entry, FiguresCache())}


def architectures() -> dict[str, dict[str, Any]]:
    """Every registered architecture with its constructor arguments and their defaults."""
    from gzoo.models import architecture_table

    return architecture_table()


def build_model(entry: ZooEntry):
    """The entry's architecture with freshly initialised weights, in eval mode."""
    from gzoo.models import create_model

    return create_model(entry.arch, **entry.arch_args).eval()


def leaderboard(method: str | None = None, task: str | None = None, progress: Progress | None = None,
                zoo: Zoo | None = None, remeasure: bool = False, runtime: str = "eager",
                measure_data: str | Path | None = None) -> dict:
    """Rows of measured figures beside the reported ones, with reductions against each teacher.

    Latency is measured in ``runtime`` (one of ``gzoo.metrics.latency.RUNTIMES``) for students and teachers alike,
    so ``latency_speedup`` is the speed-up in that runtime; a model the runtime cannot convert has no latency and
    its reason in ``latency_error``.

    ``measured`` holds each metric's newest value in the results store (see ``_measured``). Besides the zoo's
    entries, the store's local model directories (a `gzoo compress` student, anything `gzoo eval` measured by
    path) get a row, marked ``local``, while their directory exists. Latencies are timed until their median is
    stable; one that is not, or whose spread is over 10%, is not cached (``latency_settled`` false);
    ``remeasure`` times every latency again.

    With ``measure_data`` (a folder of datasets in the originals' layouts), every selected entry is first measured
    by its task's published protocol (``measure_zoo``); the board's ``measure`` lists what happened to each.
    """
    _check_runtime(runtime)
    zoo = zoo or load_zoo()
    newest = results.latest()  # first: a broken store fails before minutes of measuring
    measured_now = None
    if measure_data is not None:
        measured_now = measure_zoo(measure_data, method, task, progress, zoo)
        newest = results.latest()
    entries = zoo.select(method, task) + _local_entries(newest, zoo, method, task)
    # Teachers are measured too, even when filtered out, so every reduction has its baseline; a local model's
    # teacher at the local model's input size, so the reduction compares like with like.
    needed = {_figures_id(e): e for e in entries}
    teachers = {e.id: _teacher_entry(e, zoo) for e in entries}
    for teacher in filter(None, teachers.values()):
        needed.setdefault(_figures_id(teacher), teacher)
    cache = FiguresCache()
    figures: dict[str, dict] = {}
    for done, (key, entry) in enumerate(needed.items()):
        if progress:
            progress(done, len(needed), entry.id)
        figures[key] = _figures(entry, cache, latency=True, remeasure=remeasure, runtime=runtime)
    if progress:
        progress(len(needed), len(needed), "done")

    rows = []
    for entry in entries:
        own = figures[_figures_id(entry)]
        latency = own["latency"] or {}
        own_ms = latency.get("median_ms")
        teacher = figures[_figures_id(teachers[entry.id])] if teachers[entry.id] else None
        if teacher is None or not (latency and teacher["latency"]):
            teacher = None  # a reduction needs both models measured
        headline = next((r for m in HEADLINE_METRICS if (r := entry.reported_value(m))), None)
        measured = _measured(entry, newest.get(entry.id, {}))
        # The table shows the measured counterpart of the reported number where there is one; never a latency,
        # which has its own column.
        preferred = [*([headline.metric] if headline else []), *HEADLINE_METRICS,
                     *(m for m in measured if m != "latency_ms")]
        rows.append({
            "id": entry.id, "method": entry.method, "task": entry.task, "teacher": entry.teacher,
            "arch": entry.arch, "input": "x".join(map(str, entry.input)),
            "params": own["params"], "macs": own["macs"], "macs_paper": own["macs_paper"],
            "latency_ms": own_ms, "latency_iqr_ms": latency.get("iqr_ms"), "latency_runs": latency.get("runs"),
            "latency_spread": latency.get("spread"), "latency_stable": latency.get("stable"),
            "latency_settled": latency.get("settled"),
            "latency_error": own.get("latency_error"),
            "measurable": entry.measurable, "local": entry.line == LOCAL_LINE,
            "reported": None if headline is None else headline.as_dict(),
            "measured": measured, "measured_headline": next((m for m in preferred if m in measured), None),
            "reported_macs_paper": (r := entry.reported_value("macs_paper")) and r.value,
            "reported_all": [r.as_dict() for r in entry.reported],  # every published number, with its source
            "macs_reduction": None if teacher is None else teacher["macs_paper"] / own["macs_paper"],
            "latency_speedup": None if teacher is None else teacher["latency"]["median_ms"] / own_ms,
        })
    return {
        "gzoo_version": __version__, "torch_version": _torch_version(), "device": "cpu",
        "cpu": machine.cpu_name(), "threads": machine.threads(), "runtime": runtime,
        "latency": f"{RUNTIME_NAMES[runtime]}, batch 1, median of timed runs after a warm-up pass, timed until it "
                   "is stable",
        "results_store": str(results.store_path()), "rows": rows,
        **({"measure": measured_now} if measured_now is not None else {}),
    }


def measure_zoo(data: str | Path, method: str | None = None, task: str | None = None,
                progress: Progress | None = None, zoo: Zoo | None = None) -> list[dict]:
    """Measure every selected zoo entry by its task's published protocol on the datasets under ``data``.

    The layouts and protocols are ``gzoo.protocols.PROTOCOLS``. Each entry's data is checked before its weights
    are pulled; an entry whose weights, data and metrics are already in the results store is not measured again.
    Returns one status per entry: ``measured`` (with its numbers), ``already measured``, or ``not measured`` with
    the ``reason`` (no dataset, no weights offline, no segmenter, ...).
    """
    data = Path(data)
    if not data.is_dir():
        raise GzooError(f"--data {data}: no such folder; give the folder holding the datasets (horse2zebra/, "
                        "edges2shoes-r/, imagenet/, ...)")
    statuses = []
    entries = (zoo or load_zoo()).select(method, task)
    for done, entry in enumerate(entries):
        if progress:
            progress(done, len(entries), f"measuring {entry.id}")
        status = {"id": entry.id, "task": entry.task}
        try:
            status |= _measure_entry(entry, data, zoo, progress)
        except GzooError as err:  # this entry cannot be measured here: the others go on
            status |= {"status": "not measured", "reason": str(err)}
        statuses.append(status)
    return statuses


def _measure_entry(entry: ZooEntry, data: Path, zoo: Zoo | None, progress: Progress | None) -> dict:
    from gzoo import evaluation, protocols

    if not entry.measurable:
        return {"status": "not measured", "reason": "its architecture's widths are not known, so it has no model"}
    if not entry.weights:
        return {"status": "not measured", "reason": "no published weights"}
    located = protocols.locate(entry.task, data)
    if isinstance(located, str):
        return {"status": "not measured", "reason": located}
    protocol, folder, options = located
    planned = evaluation.plan(folder, entry.as_dict(), False, options)  # the data, checked before any pull
    if not planned.metrics:
        return {"status": "not measured", "reason": "; ".join(planned.skipped.values())}
    subject = evaluation.load_subject(pull(entry.id, zoo=zoo))
    digest = evaluation.data_hash(planned)
    stored = {r.metric for r in results.history(subject.model_id)
              if r.weights_sha256 == subject.weights_sha256 and r.dataset_sha256 == digest}
    if set(planned.metrics) <= stored:
        return {"status": "already measured", "protocol": protocol.words}

    def images(done: int, total: int, label: str) -> None:
        if progress:
            progress(done, total, f"{entry.id}: {label}")

    measured = evaluation.evaluate(subject, planned, None, options, f"cpu: {machine.cpu_name()}", images)
    return {"status": "measured", "protocol": protocol.words, "metrics": measured["metrics"],
            "warnings": measured["warnings"]}


def results_export(model_id: str | None = None) -> dict:
    """Every result in the store (of one model, if given), in the order recorded, each with its provenance."""
    return {"results_store": str(results.store_path()), "gzoo_version": __version__,
            "results": [result.as_dict() for result in results.history(model_id)]}


LOCAL_LINE = -1  # the ZooEntry.line of a local model directory's row (it has no line in zoo.yaml)


def _local_entries(newest: dict[str, dict], zoo: Zoo, method: str | None, task: str | None) -> list[ZooEntry]:
    """Entries for the measured model directories of the results store (keyed by their absolute path)."""
    local = []
    for key in newest:
        directory = Path(key)
        if key in zoo.entries or not directory.is_absolute():
            continue
        from gzoo.data.modeldir import CONFIG, read_config  # imports torch: only when the store has local models

        if not (directory / CONFIG).is_file():
            continue
        config = read_config(directory)
        shape = config.get("input") or DEFAULT_INPUT
        entry = ZooEntry(id=key, method=config.get("method", "community"), task=config.get("task", "-"),
                         arch=config["arch"], arch_args=config["arch_args"],
                         input=(shape["channels"], shape["height"], shape["width"]),
                         teacher=config.get("teacher"), line=LOCAL_LINE)
        if (method is None or entry.method == method) and (task is None or entry.task == task):
            local.append(entry)
    return local


def _teacher_entry(entry: ZooEntry, zoo: Zoo) -> ZooEntry | None:
    """The zoo entry of an entry's teacher; for a local model, measured at the local model's input size."""
    if not entry.teacher or entry.teacher not in zoo.entries:
        return None
    teacher = zoo.get(entry.teacher)
    return replace(teacher, input=entry.input) if entry.line == LOCAL_LINE else teacher


def _figures_id(entry: ZooEntry) -> str:
    return f"{entry.id}@{'x'.join(map(str, entry.input))}"


def _measured(entry: ZooEntry, newest: dict[str, results.Result]) -> dict[str, dict]:
    """The entry's newest measured value per metric with its provenance.

    ``protocol_differs`` is None for a metric the paper did not report; otherwise it says whether the measurement
    did not follow the paper's protocol (``Result.follows``), i.e. whether the two numbers are not comparable.
    """
    measured = {}
    for metric, result in newest.items():
        reported = entry.reported_value(metric)
        provenance = {k: v for k, v in result.as_dict().items() if k not in ("model_id", "metric")}
        measured[metric] = {**provenance,
                            "protocol_differs": None if reported is None else not result.follows(reported.protocol)}
    return measured


def bench(model: str | Path, vs: str | Path | None = None, runtime: str = "eager", threads: int | None = None,
          batch: int = 1, runs: int = 10, progress: Progress | None = None, zoo: Zoo | None = None) -> dict:
    """Latency and peak memory of a model (zoo id: its architecture with random weights; or a model directory).

    With ``vs``, both are timed in alternating turns in this one process and ``ratio`` is B's median over
    A's: above 1, A is that many times faster.
    """
    from gzoo.metrics.latency import measure_interleaved

    _check_runtime(runtime)
    for name, value in (("--threads", threads), ("--batch", batch), ("--runs", runs)):
        if value is not None and value < 1:
            raise GzooError(f"{name} must be at least 1, not {value}")
    threads = threads or machine.threads()
    zoo = zoo or load_zoo()
    named = [str(m) for m in (model, vs) if m is not None]
    built = [_bench_model(name, zoo) for name in named]
    examples = [_example(shape, batch) for _, shape, _ in built]

    def timed(done: int, total: int) -> None:
        if progress:
            progress(done, total, "timing")

    latencies = measure_interleaved([m for m, _, _ in built], examples, runtime, threads, runs, progress=timed)
    a_ms, b_ms = latencies[0].median_ms, latencies[-1].median_ms
    return {
        "gzoo_version": __version__, "torch_version": _torch_version(), "device": "cpu", "cpu": machine.cpu_name(),
        "threads": threads, "batch": batch, "runtime": runtime, "runs": runs,
        "models": [{"model": name, "weights": weights, "input": "x".join(map(str, shape)), **latency.as_dict()}
                   for name, (_, shape, weights), latency in zip(named, built, latencies, strict=True)],
        "ratio": b_ms / a_ms if vs is not None else None,
    }


# What each runtime is, for captions (gzoo.metrics.latency.RUNTIMES, spelled out without importing torch).
RUNTIME_NAMES = {"eager": "eager PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO fp32",
                 "openvino-int8": "OpenVINO int8 (NNCF, every layer it quantizes by default)",
                 "executorch": "ExecuTorch (XNNPACK) on this CPU"}


def _check_runtime(runtime: str) -> None:
    if runtime not in RUNTIME_NAMES:
        raise GzooError(f"unknown runtime '{runtime}'; choose one of {', '.join(RUNTIME_NAMES)}")


def _bench_model(name: str, zoo: Zoo) -> tuple[Any, tuple[int, int, int], str]:
    """The model to time, its input shape (channels, height, width) and where its weights come from."""
    from gzoo.data.modeldir import CONFIG, read_config
    from gzoo.models import load_model_dir

    path = Path(name)
    if (path / CONFIG).is_file():
        shape = read_config(path).get("input", DEFAULT_INPUT)
        return load_model_dir(path), tuple(shape[k] for k in ("channels", "height", "width")), "directory"
    if name not in zoo.entries:
        raise GzooError(f"'{name}' is neither a gzoo model directory nor a zoo id{closest(name, list(zoo.entries))}; "
                        "`gzoo list` shows every id")
    entry = zoo.get(name)
    if not entry.measurable:
        raise GzooError(f"{name}: its exact architecture is unknown (not measurable yet); bench a model directory "
                        "converted from its checkpoint instead")
    return build_model(entry), entry.input, "random"


def _example(shape: tuple[int, int, int], batch: int):
    import torch

    # Seeded, so both models of a comparison and every run see the same input.
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1


# --- weights: convert, pull, load ---------------------------------------------------------------------------

def convert(source: Path, fmt: str | None, output: Path | None, arch: str | None = None,
            arch_args: dict | None = None, entry: ZooEntry | None = None) -> Path:
    """Convert an original checkpoint into a gzoo model directory at ``output``.

    The source is checked first (a missing file, a folder or an image is refused), then the format and output.
    """
    from gzoo.data.modeldir import save_model_dir, sha256_of
    from gzoo.models import create_model, load_state_checked
    from gzoo.zoo.card import model_card
    from gzoo.zoo.converters import check_source, formats, get_converter

    source = Path(source)
    check_source(source)
    if not fmt:
        raise GzooError(f"give the format of {source} with --from: one of {', '.join(formats())}")
    if output is None:
        raise GzooError("give the model directory to write with -o DIR")
    converted = get_converter(fmt)(source, arch, dict(arch_args or {}))
    model = create_model(converted.arch, **converted.arch_args)
    load_state_checked(model, converted.state_dict, str(source))
    config: dict[str, Any] = {}
    if entry is not None:
        config = {k: v for k, v in entry.as_dict().items() if k not in ("arch", "arch_args", "weights")}
    config.update(arch=converted.arch, arch_args=converted.arch_args,
                  source={"format": fmt, "file": source.name, "sha256": sha256_of(source)}, **converted.extra)
    return save_model_dir(output, model.state_dict(), config, model_card(config, reported=config.get("reported") or ()))


def model_dir(model_id: str) -> Path:
    """Where a pulled zoo entry's model directory lives."""
    return gzoo_home() / "models" / model_id.replace("/", "--")


def pull(model_id: str, revision: str | None = None, zoo: Zoo | None = None) -> Path:
    """Fetch and verify an entry's weights and convert them into its model directory; returns the directory."""
    from gzoo.data.modeldir import CONFIG, read_config, sha256_of
    from gzoo.zoo.hub import fetch_weights

    entry = (zoo or load_zoo()).get(model_id)
    checkpoint = fetch_weights(entry, revision)
    directory = model_dir(entry.id)
    # The same checkpoint was converted before: nothing to redo.
    if (directory / CONFIG).is_file() and read_config(directory)["source"]["sha256"] == sha256_of(checkpoint):
        return directory
    return convert(checkpoint, entry.weights["format"], directory, entry.arch, entry.arch_args, entry=entry)


def pin(model_id: str) -> dict[str, str]:
    """Pin an entry's weights (commit and sha256) in the zoo file in use; returns what was recorded."""
    from gzoo.zoo import zoo_path
    from gzoo.zoo.hub import pin_entry

    path = zoo_path()
    return pin_entry(path, load_zoo(path).get(model_id))


def push(directory: str | Path, repo_id: str, private: bool = False, token: str | None = None,
         revision: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Upload a model directory to the Hugging Face Hub model repository ``repo_id``; returns
    {"repo_id", "commit", "url", "files"}.

    The card (README.md) is regenerated first, in place: Hub metadata, the teacher as ``base_model`` where its
    weights are on the Hub, and a ``model-index`` of the newest results measured on these weights (results store,
    keyed as ``gzoo eval`` keys them); published numbers go into the card's body only.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from gzoo.data.modeldir import CARD, CONFIG, read_config, results_key, sha256_of, weights_path
    from gzoo.zoo.card import model_card
    from gzoo.zoo.hub import upload_files

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise GzooError(f"'{repo_id}' is not a Hub repository id ({str(err).splitlines()[0]}); write it as "
                        "'user/name' or 'organization/name'") from None
    directory = Path(directory)
    config = read_config(directory)  # refuses a directory without config.json
    weights_file = weights_path(directory, config)
    if not weights_file.is_file():
        raise GzooError(f"{directory} is not a complete gzoo model directory (no {weights_file.name}); "
                        "convert the model again")
    steps = ("model card", f"uploading to {repo_id}")
    if progress:
        progress(0, len(steps), steps[0])
    zoo = load_zoo()
    key = results_key(directory, config)
    weights = sha256_of(weights_file)
    newest: dict[str, results.Result] = {}
    left_out = 0
    for result in sorted(results.history(key), key=lambda r: r.date):  # stable: the last recorded wins a tie
        if result.weights_sha256 == weights:
            newest[result.metric] = result
        else:
            left_out += 1
    reported = zoo.entries[key].as_dict()["reported"] if key in zoo.entries else config.get("reported") or []
    atomic_write_text(directory / CARD, model_card(config, repo_id, list(newest.values()), reported, zoo, left_out))
    if progress:
        progress(1, len(steps), steps[1])
    message = f"Upload {config.get('id') or directory.name} with gzoo {__version__}"
    pushed = upload_files(directory, [weights_file.name, CONFIG, CARD], repo_id, message, private, token, revision)
    if progress:
        progress(len(steps), len(steps), "done")
    return pushed


def load(id_or_dir: str | Path):
    """The ready model (nn.Module, eval mode) of a model directory or a zoo id (pulled when needed)."""
    from gzoo.models import load_model_dir

    return load_model_dir(model_directory(id_or_dir))


def model_directory(id_or_dir: str | Path) -> Path:
    """The model directory itself, or a zoo id's directory in the cache (pulled when needed)."""
    from gzoo.data.modeldir import CONFIG

    local = _local_model(id_or_dir)
    if local is not None:
        return local
    directory = model_dir(str(id_or_dir))
    if not (directory / CONFIG).is_file():
        directory = pull(str(id_or_dir))
    return directory


def _local_model(id_or_dir: str | Path) -> Path | None:
    """A model directory, or None for what can only be a zoo id; a path that holds no model is refused."""
    from gzoo.data.modeldir import CONFIG

    path = Path(id_or_dir)
    if (path / CONFIG).is_file():
        return path
    if path.exists():
        raise GzooError(f"{path} is not a gzoo model directory (no {CONFIG}); convert a checkpoint with "
                        "`gzoo convert`")
    return None


def _model_config(id_or_dir: str | Path) -> dict[str, Any]:
    """A model's config without the network: its directory's config.json, or its zoo entry (an unknown id is one
    line with suggestions)."""
    from gzoo.data.modeldir import read_config

    local = _local_model(id_or_dir)
    return read_config(local) if local is not None else load_zoo().get(str(id_or_dir)).as_dict()


def evaluate(id_or_dir: str | Path, data: str | Path, metrics: list[str] | None = None,
             teacher: str | Path | None = None, progress: Progress | None = None, store: bool = True,
             **options: Any) -> dict[str, Any]:
    """Measure a model (zoo id or model directory) on a dataset and store every number in the results store.

    ``teacher`` defaults to the model's own teacher (from zoo.yaml or its config.json) when one is set; options
    are those of ``gzoo.evaluation.Options`` (mode, direction, reference, batch_size, max_images, save_images,
    kid_subset_size, inception_weights, threads, segmenter, labels, split). Every local input is checked before a
    model is loaded or its weights fetched. The result's ``skipped`` names each metric left out and why,
    ``warnings`` the numbers that are not comparable with published ones.
    """
    from gzoo import evaluation

    config = _model_config(id_or_dir)
    teacher = teacher or config.get("teacher")
    if teacher:
        evaluation.check_teacher_input(config, _model_config(teacher), str(teacher))
    settings = evaluation.Options(metrics=tuple(metrics) if metrics else None,
                                  **{k: v for k, v in options.items() if v is not None})
    planned = evaluation.plan(Path(data), config, teacher is not None, settings)
    subject = evaluation.load_subject(model_directory(id_or_dir))
    mentor = evaluation.load_subject(model_directory(teacher)) if teacher else None
    return evaluation.evaluate(subject, planned, mentor, settings, f"cpu: {machine.cpu_name()}", progress, store)


def compress(recipe: str | Path, teacher: str | None = None, data: str | Path | None = None,
             output: str | Path | None = None, resume: bool = False, overrides: list[str] = (),
             progress: Callable[[str, int, int, dict[str, float]], None] | None = None,
             notify: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a compression recipe; returns the summary of its exported, evaluated student.

    The recipe is read and checked completely (keys, types, method, teacher architecture, data, MACs budget)
    before anything is downloaded or trained. ``output`` defaults to runs/<recipe name>; ``resume`` continues a
    killed run there, never repeating a finished stage. ``progress`` is called with (stage, done, total, losses),
    ``notify`` with a line saying where a resumed run goes on. Ctrl-C raises ``gzoo.errors.Interrupted`` once the
    step in progress is saved.
    """
    from gzoo.compress import get_method
    from gzoo.compress.pipeline import check_inputs, check_teacher
    from gzoo.compress.pipeline import compress as run_pipeline
    from gzoo.compress.recipe import load_recipe
    from gzoo.zoo.card import model_card

    loaded = load_recipe(recipe, list(overrides), teacher, str(data) if data else None)
    if loaded.teacher:  # a method may train some recipes with no teacher (Fritz from a style image)
        check_teacher(get_method(loaded.method), loaded.teacher, _model_config(loaded.teacher)["arch"])
    check_inputs(loaded)
    directory = Path(output) if output else Path("runs") / Path(recipe).stem
    teacher_directory = partial(model_directory, loaded.teacher) if loaded.teacher else None
    return run_pipeline(loaded, directory, teacher_directory, resume, progress, card=model_card, notify=notify)


def export(id_or_dir: str | Path, format: str, output: str | Path | None = None, int8: bool = False,
           calibration: str | Path | None = None, input_size: str | tuple[int, int] | None = None,
           min_psnr: float | None = None, threads: int | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """Export a model (zoo id, pulled when needed, or model directory) to ONNX or OpenVINO IR; returns the export's
    config.json with ``path``.

    The export is checked against eager PyTorch on a real photo before it is written. ``int8`` (OpenVINO) quantizes
    with NNCF on ``calibration`` (a folder of real images; default: the held-out crops of the `gzoo compress` run
    that made the model) and keeps ``min_psnr`` dB (default 30) against fp32 on them. ``output`` defaults to
    exports/<name>-<format>[-int8]; ``input_size`` (height, width, or "HxW") to the model's input size.
    """
    from gzoo.data.modeldir import read_config, sha256_of, weights_path
    from gzoo.deploy import check_request, default_calibration, parse_size
    from gzoo.deploy import export as export_model
    from gzoo.metrics.openvino import MIN_PSNR
    from gzoo.models import load_model_dir

    check_request(format, int8)
    directory = model_directory(id_or_dir)
    config = read_config(directory)
    shape = config.get("input") or DEFAULT_INPUT
    if shape["channels"] != 3:
        raise GzooError(f"{id_or_dir} takes {shape['channels']}-channel inputs; gzoo exports image-to-image "
                        "generators of RGB images")
    size = parse_size(input_size) if input_size is not None else (shape["height"], shape["width"])
    is_dir = Path(id_or_dir) == directory
    name = directory.name if is_dir else str(id_or_dir)
    if int8 and calibration is None:
        calibration = default_calibration(config, name)
    source = {"id": config.get("id") or (None if is_dir else str(id_or_dir)), "path": str(directory.resolve()),
              "arch": config["arch"], "arch_args": config["arch_args"], "teacher": config.get("teacher"),
              "weights_sha256": sha256_of(weights_path(directory, config))}
    output = Path(output) if output else Path("exports") / f"{name.replace('/', '--')}-{format}{'-int8' * int8}"
    return export_model(load_model_dir(directory), format, output, size, source=source, int8=int8,
                        calibration=Path(calibration) if calibration is not None else None,
                        min_psnr=MIN_PSNR if min_psnr is None else min_psnr, threads=threads, progress=progress)


def directory_info(directory: Path) -> dict:
    """A model directory's config with its parameter count and its size.

    ``size.dense_bytes`` is the dense weights file as stored, for a packed directory the dense float32 form its
    file decodes to; ``size.packed_bytes`` the packed form in the paper's accounting where a format has one
    (Bit-Goes-Down's), else the packed file's bytes; ``size.file_bytes`` the weights file on disk.
    """
    from gzoo.data.modeldir import read_config, weights_path
    from gzoo.metrics import count_params
    from gzoo.models import load_model_dir

    directory = Path(directory)
    model = load_model_dir(directory)
    config = read_config(directory)
    file_bytes = weights_path(directory, config).stat().st_size
    size = {"dense_bytes": file_bytes, "file_bytes": file_bytes}
    if config.get("packing"):
        size["dense_bytes"] = sum(t.numel() * (4 if t.is_floating_point() else t.element_size())
                                  for t in model.state_dict().values())
        size["packed_bytes"] = file_bytes
    if "packed" in config:
        size["packed_bytes"] = config["packed"]["packed_bytes"]
    return {**config, "path": str(directory), "params": count_params(model), "size": size}


# --- FID and KID ----------------------------------------------------------------------------------------------

def fid(first: str | Path, second: str | Path, with_kid: bool = False, kid_subset_size: int | None = None,
        kid_subsets: int = 100, batch_size: int = 32, inception_weights: str | None = None,
        progress: Progress | None = None) -> dict[str, Any]:
    """FID (and KID) between two image folders, or between a folder and an .npz of reference statistics.

    Each folder's Inception features are cached by its content, so a folder already measured is not read
    through the network again.
    """
    from gzoo.data.images import ImageCounter, scan_image_folder
    from gzoo.metrics import fid as fidlib
    from gzoo.metrics.inception import inception_weights_path

    if batch_size < 1:
        raise GzooError(f"--batch-size must be at least 1, not {batch_size}")
    second = Path(second)
    reference = None
    if second.suffix == ".npz" and not second.is_dir():
        if with_kid:
            raise GzooError(f"{second}: KID needs the reference images, not statistics; give a folder, or drop --kid")
        reference = fidlib.load_npz_statistics(second)
    folders = [scan_image_folder(first)] + ([] if reference is not None else [scan_image_folder(second)])
    weights, weights_source = inception_weights_path(inception_weights)
    inception = fidlib.InceptionFeatures(weights)
    counter = ImageCounter(sum(len(folder) for folder in folders), progress)
    features, inputs = [], []
    for folder in folders:
        advance = partial(counter.advance, label=str(folder.root))
        content = folder.content_hash()
        measured, cached = inception.folder(folder, batch_size, advance)
        features.append(measured)
        inputs.append({"path": str(folder.root), "images": len(folder), "skipped": len(folder.skipped),
                       "size": "x".join(map(str, folder.size)), "content_sha256": content,
                       "features_cached": cached})
    if reference is not None:
        inputs.append({"path": str(second), "statistics": "npz (mu, sigma)"})
    stats = [fidlib.statistics(f) for f in features] + ([reference] if reference is not None else [])
    if stats[0]["mu"].shape != stats[1]["mu"].shape:
        raise GzooError(f"{second}: statistics of {stats[1]['mu'].shape[0]} features, the Inception pool3 layer "
                        f"gives {stats[0]['mu'].shape[0]}; give statistics of the standard 2048-d features")
    result: dict[str, Any] = {"fid": fidlib.fid(stats[0], stats[1])}
    if with_kid:
        mean, std, size = fidlib.kid(features[0], features[1], kid_subset_size, kid_subsets)
        result.update(kid_mean=mean, kid_std=std, kid_subset_size=size, kid_subsets=kid_subsets)
    return {**result, "inputs": inputs, "protocol": fidlib.PROTOCOL,
            "inception": {"source": weights_source, "path": str(weights)}}


# --- measured architecture figures, cached -----------------------------------------------------------------

class FiguresCache:
    """``$GZOO_HOME/figures.json``: read once, written atomically after each new measurement."""

    def __init__(self) -> None:
        self.path = gzoo_home() / "figures.json"
        try:
            self.figures = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.figures = {}  # no cache yet, or an unreadable one: measure again

    def get_or_measure(self, key: str, measure: Callable[[], dict], keep: Callable[[dict], bool] | None = None,
                       again: bool = False) -> dict:
        """The cached figures of ``key``, or (``again``: always) measured now; a measurement that ``keep`` refuses
        is returned but not cached."""
        if key in self.figures and not again:
            return self.figures[key]
        measured = measure()
        if keep is None or keep(measured):
            self.figures[key] = measured
        elif self.figures.pop(key, None) is None:  # an older value would contradict the one shown: dropped
            return measured
        try:
            atomic_write_text(self.path, json.dumps(self.figures, indent=1, sort_keys=True))
        except OSError as err:
            raise GzooError(f"cannot write the figures cache {self.path}: {err.strerror}; "
                            "set GZOO_HOME to a writable directory", exit_code=1) from err
        return measured


def _figures_key(entry: ZooEntry) -> str:
    # The digest of the models' and the measuring code keeps a development install from serving figures of older code.
    return json.dumps([entry.arch, entry.arch_args, entry.input, __version__, _torch_version(), figures_digest()],
                      sort_keys=True)


def _figures(entry: ZooEntry, cache: FiguresCache, latency: bool = False, remeasure: bool = False,
             runtime: str = "eager") -> dict[str, Any]:
    """Params and MACs (and, with ``latency``, CPU latency in ``runtime``) of the entry's architecture, cached.

    Params and MACs come from a model on the ``meta`` device, which computes nothing; only the latency
    needs real weights. A latency is timed after a warm-up pass until its median is stable (at least 3 runs, then
    at most 30 or 1 s); only a settled one (stable, spread within 10%) is cached. ``remeasure`` times it again.
    """
    if not entry.measurable:
        return {"params": None, "macs": None, "macs_paper": None, **({"latency": None} if latency else {})}

    def count() -> dict[str, int]:
        import torch

        from gzoo.metrics import count_macs, count_params

        with torch.device("meta"):
            model = build_model(entry)
            macs = count_macs(model, torch.zeros(1, *entry.input))
        return {"params": count_params(model), "macs": macs.macs, "macs_paper": macs.macs_paper}

    def time_it() -> dict[str, dict]:
        import torch

        from gzoo.metrics import measure_latency

        example = torch.rand(1, *entry.input) * 2 - 1
        try:
            measured = measure_latency(build_model(entry), example, warmup=1, runs=30, min_runs=3, max_seconds=1.0,
                                       threads=machine.threads(), until_stable=True, runtime=runtime)
        except GzooError as err:
            if runtime == "eager":
                raise
            return {"latency": None, "latency_error": str(err)}  # this runtime cannot run it; the board goes on
        return {"latency": measured.as_dict()}

    try:
        figures = dict(cache.get_or_measure("static " + _figures_key(entry), count))
        if latency:
            key = f"latency until stable {_figures_key(entry)} {machine.cpu_name()} threads={machine.threads()}"
            key += "" if runtime == "eager" else f" runtime={runtime} {_runtime_versions(runtime)}"
            figures.update(cache.get_or_measure(key, time_it, keep=lambda f: f["latency"] is None or
                                                f["latency"]["settled"], again=remeasure))
    except (ValueError, RuntimeError) as err:  # the architecture refused the zoo entry's input shape
        shape = "x".join(map(str, entry.input))
        raise GzooError(f"{entry.id}: its input {shape} (zoo.yaml line {entry.line}) does not fit {entry.arch}: "
                        f"{str(err).splitlines()[0]}") from None
    return figures


def _runtime_versions(runtime: str) -> str:
    packages = {"onnxruntime": ["onnxruntime"], "openvino": ["openvino"], "openvino-int8": ["openvino", "nncf"],
                "executorch": ["executorch"]}
    found = []
    for package in packages[runtime]:
        try:
            found.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            found.append(f"{package}=none")
    return " ".join(found)


@cache
def _torch_version() -> str:
    return version("torch")  # read from the package metadata: importing torch costs seconds
