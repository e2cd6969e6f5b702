"""The Python API behind the CLI: list the zoo, describe an entry, build the leaderboard.

Architecture figures (params, MACs, CPU latency) are measured on this machine and cached in
``$GZOO_HOME/figures.json``, keyed by architecture, arguments, input size, gzoo and torch versions
(and, for latency, the CPU and thread count), so only the first run pays for them.
"""

import json
import os
import platform
from collections.abc import Callable
from functools import cache
from importlib.metadata import version

from gzoo import __version__
from gzoo.errors import GzooError
from gzoo.paths import atomic_write_text, gzoo_home
from gzoo.zoo import Zoo, ZooEntry, load_zoo
from gzoo.zoo.architectures import models_digest

# The quality metric a leaderboard row shows, in order of preference.
HEADLINE_METRICS = ("fid", "miou", "top1", "kid", "size_bytes", "fps")
Progress = Callable[[int, int, str], None]  # (done, total, label)


def list_models(method: str | None = None, task: str | None = None, zoo: Zoo | None = None) -> list[dict]:
    """Every entry of a method/task with its architecture figures (params, MACs in both conventions)."""
    zoo = zoo or load_zoo()
    cache = FiguresCache()
    return [{**entry.as_dict(), **_static_figures(entry, cache)} for entry in zoo.select(method, task)]


def model_info(model_id: str, zoo: Zoo | None = None) -> dict:
    """One entry with its architecture figures."""
    zoo = zoo or load_zoo()
    entry = zoo.get(model_id)
    return {**entry.as_dict(), **_static_figures(entry, FiguresCache())}


def build_model(entry: ZooEntry):
    """The entry's architecture with freshly initialised weights, in eval mode."""
    from gzoo.models import create_model

    return create_model(entry.arch, **entry.arch_args).eval()


def leaderboard(method: str | None = None, task: str | None = None, progress: Progress | None = None,
                zoo: Zoo | None = None) -> dict:
    """Rows of measured figures beside the reported ones, with reductions against each teacher."""
    zoo = zoo or load_zoo()
    entries = zoo.select(method, task)
    # Teachers are measured too, even when filtered out, so every reduction has its baseline.
    needed = {e.id: e for e in entries}
    for entry in entries:
        if entry.teacher:
            needed.setdefault(entry.teacher, zoo.get(entry.teacher))
    cache = FiguresCache()
    figures: dict[str, dict] = {}
    for done, entry in enumerate(needed.values()):
        if progress:
            progress(done, len(needed), entry.id)
        figures[entry.id] = {**_static_figures(entry, cache), **_latency_figures(entry, cache)}
    if progress:
        progress(len(needed), len(needed), "done")

    rows = []
    for entry in entries:
        own = figures[entry.id]
        own_ms = own["latency"]["median_ms"]
        teacher = figures.get(entry.teacher) if entry.teacher else None
        headline = next((r for m in HEADLINE_METRICS if (r := entry.reported_value(m))), None)
        rows.append({
            "id": entry.id, "method": entry.method, "task": entry.task, "teacher": entry.teacher,
            "arch": entry.arch, "input": "x".join(map(str, entry.input)),
            "params": own["params"], "macs": own["macs"], "macs_paper": own["macs_paper"],
            "latency_ms": own_ms, "latency_iqr_ms": own["latency"]["iqr_ms"],
            "reported": None if headline is None else headline.as_dict(),
            "macs_reduction": None if teacher is None else teacher["macs_paper"] / own["macs_paper"],
            "latency_speedup": None if teacher is None else teacher["latency"]["median_ms"] / own_ms,
        })
    return {
        "gzoo_version": __version__, "torch_version": _torch_version(), "device": "cpu",
        "cpu": _cpu_name(), "threads": _threads(), "latency": "eager PyTorch, batch 1, median of timed runs",
        "rows": rows,
    }


# --- measured architecture figures, cached -----------------------------------------------------------------

class FiguresCache:
    """``$GZOO_HOME/figures.json``: read once, written atomically after each new measurement."""

    def __init__(self) -> None:
        self.path = gzoo_home() / "figures.json"
        try:
            self.figures = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.figures = {}  # no cache yet, or an unreadable one: measure again

    def get_or_measure(self, key: str, measure: Callable[[], dict]) -> dict:
        if key not in self.figures:
            self.figures[key] = measure()
            try:
                atomic_write_text(self.path, json.dumps(self.figures, indent=1, sort_keys=True))
            except OSError as err:
                raise GzooError(f"cannot write the figures cache {self.path}: {err.strerror}; "
                                "set GZOO_HOME to a writable directory", exit_code=1) from err
        return self.figures[key]


def _figures_key(entry: ZooEntry) -> str:
    # The models' source digest keeps a development install from serving figures of older code.
    return json.dumps([entry.arch, entry.arch_args, entry.input, __version__, _torch_version(), models_digest()],
                      sort_keys=True)


def _static_figures(entry: ZooEntry, cache: FiguresCache) -> dict[str, int]:
    def measure() -> dict[str, int]:
        import torch

        from gzoo.metrics import count_macs, count_params

        model = build_model(entry)
        count = count_macs(model, torch.zeros(1, *entry.input))
        return {"params": count_params(model), "macs": count.macs, "macs_paper": count.macs_paper}

    return cache.get_or_measure("static " + _figures_key(entry), measure)


def _latency_figures(entry: ZooEntry, cache: FiguresCache) -> dict[str, dict]:
    def measure() -> dict[str, dict]:
        import torch

        from gzoo.metrics import measure_latency

        example = torch.rand(1, *entry.input) * 2 - 1
        latency = measure_latency(build_model(entry), example, warmup=1, runs=10, min_runs=3, max_seconds=1.0,
                                  threads=_threads())
        return {"latency": latency.as_dict()}

    return cache.get_or_measure(f"latency {_figures_key(entry)} {_cpu_name()} threads={_threads()}", measure)


@cache
def _torch_version() -> str:
    return version("torch")  # read from the package metadata: importing torch costs seconds


def _threads() -> int:
    # torch uses one thread per core unless told otherwise; reading the environment avoids importing it.
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


@cache
def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

