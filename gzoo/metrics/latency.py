"""Latency and peak memory of a model in eager PyTorch, ONNX Runtime or OpenVINO (fp32 or NNCF int8): median (and IQR)
of timed runs after warm-up.

``openvino-int8`` quantizes every layer NNCF quantizes by default, calibrated on real photos (scikit-image's, at the
example's size; a model of other inputs, on the example) unless calibration inputs are given: the fastest int8 the
model has. ``gzoo export --int8`` may keep
instance norms in float for accuracy (``gzoo.metrics.openvino.quantize_int8``); time its output by handing the
quantized ``openvino.Model`` itself to ``measure_interleaved``.

Peak memory is what a model's passes add on top of what the process already holds:

- on a CUDA device, ``torch.cuda.max_memory_allocated`` above the memory allocated before the passes;
- on the CPU (Linux), the process's peak resident set (``VmHWM``) above its resident set before the passes.
  Peak RSS is process-wide and only ever grows, so before each measurement the C allocator hands its free
  memory back (``malloc_trim``) and the peak is reset (``/proc/self/clear_refs``). It still counts whatever
  else the process does meanwhile, and memory a runtime keeps between passes (ONNX Runtime's arena, thread
  stacks) shows up only on the passes that first grew it: the measured passes start from an emptied arena.
  Elsewhere it is ``None``.
"""

import ctypes
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from gzoo.errors import GzooError
from gzoo.metrics.onnx import export_onnx, import_onnxruntime, ort_session

RUNTIMES = ("eager", "onnxruntime", "openvino", "openvino-int8", "executorch")
OPENVINO_RUNTIMES = ("openvino", "openvino-int8")
ONNX_TOLERANCE = 1e-4  # max abs difference between ONNX Runtime's output and eager PyTorch's
STABLE_WITHIN = 0.05  # a median is stable when the newest third of the runs moved it by at most 5%
SPREAD_LIMIT = 0.10  # a timing whose IQR is above 10% of its median is too noisy to keep


@dataclass(frozen=True)
class Latency:
    median_ms: float
    iqr_ms: float
    runs: int
    warmup: int
    threads: int
    batch: int
    runtime: str = "eager"
    device: str = "cpu"
    peak_memory_mb: float | None = None  # see the module's docstring for what it measures
    stable: bool = False  # the median had stopped moving (``median_stable``) when timing ended
    spread: float = 0.0  # IQR / median

    @property
    def settled(self) -> bool:
        """Trustworthy enough to keep and show as a plain number: a stable median and a spread within 10%."""
        return self.stable and self.spread <= SPREAD_LIMIT

    def as_dict(self) -> dict:
        return {**asdict(self), "settled": self.settled}


def measure_latency(model: nn.Module, example: torch.Tensor, warmup: int = 2, runs: int = 20,
                    min_runs: int = 3, max_seconds: float = 3.0, threads: int | None = None,
                    runtime: str = "eager", until_stable: bool = False,
                    calibration: torch.Tensor | None = None) -> Latency:
    """Time ``model(example)`` in ``runtime`` (eager PyTorch, or ONNX Runtime or OpenVINO on the CPU).

    Runs ``warmup`` untimed passes, then up to ``runs`` timed ones, stopping early once ``min_runs`` are
    done and ``max_seconds`` have passed (so heavy models do not stall a leaderboard), or, ``until_stable``,
    as soon as ``min_runs`` are done and the median is stable. ``stable`` says whether the median had stopped
    moving when timing ended; a first, cold pass is never timed unless ``warmup`` is 0.

    Timings assume an otherwise idle machine: with every core busy elsewhere, PyTorch's spinning worker
    threads make small-op networks (mobile generators) several times slower.
    """
    threads = threads or torch.get_num_threads()
    with _runner(model, example, runtime, threads, calibration) as run, _PeakMemory(example.device) as memory:
        for _ in range(warmup):
            run()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < runs:
            if len(times) >= min_runs and (time.perf_counter() - start >= max_seconds
                                           or until_stable and median_stable(times)):
                break
            times.append(_timed_ms(run))
    return _summary(times, warmup, threads, example, runtime, memory.megabytes)


def median_stable(times: Sequence[float], within: float = STABLE_WITHIN) -> bool:
    """Whether the median of ``times`` no longer moves: at least three runs, and the median of all of them within
    ``within`` (relative) of the median of the runs before the newest third."""
    if len(times) < 3:
        return False
    earlier = times[:len(times) - max(1, len(times) // 3)]
    median = statistics.median(times)
    return abs(median - statistics.median(earlier)) <= within * median


def measure_onnx_latency(model: nn.Module, example: torch.Tensor, **protocol) -> Latency:
    """``measure_latency`` in ONNX Runtime: exported once, checked against eager PyTorch, then timed."""
    return measure_latency(model, example, runtime="onnxruntime", **protocol)


def measure_interleaved(models: Sequence[nn.Module], examples: Sequence[torch.Tensor],
                        runtime: str | Sequence[str] = "eager", threads: int | None = None, runs: int = 10,
                        rounds: int = 5, progress: Callable[[int, int], None] | None = None,
                        calibration: Sequence[torch.Tensor | None] | None = None) -> list[Latency]:
    """Time several models in alternating turns (A, B, A, B, ...), so machine drift hits them all alike.

    ``runtime`` is one for all models or one per model (a model in several runtimes is then one entry per
    runtime); ``calibration``, one per model, holds the openvino-int8 calibration inputs (None: real photos).
    A model may be an ``openvino.Model`` (already converted, maybe quantized) for the OpenVINO runtimes.

    Each model gets ``runs`` timed passes spread over up to ``rounds`` turns; every turn starts with one
    untimed pass, which absorbs what the previous model's turn left behind (caches, waking threads).
    ``progress(done, total)`` counts timed passes.
    """
    threads = threads or torch.get_num_threads()
    runtimes = [runtime] * len(models) if isinstance(runtime, str) else list(runtime)
    calibration = list(calibration) if calibration is not None else [None] * len(models)
    per_turn = max(1, runs // rounds)
    times: list[list[float]] = [[] for _ in models]
    peaks: list[list[float]] = [[] for _ in models]
    warmups = [0] * len(models)
    with ExitStack() as stack:
        runners = [stack.enter_context(_runner(m, x, r, threads, c))
                   for m, x, r, c in zip(models, examples, runtimes, calibration, strict=True)]
        while len(times[-1]) < runs:
            for i, run in enumerate(runners):
                with _PeakMemory(examples[i].device) as memory:
                    run()
                    times[i] += [_timed_ms(run) for _ in range(min(per_turn, runs - len(times[i])))]
                warmups[i] += 1
                if memory.megabytes is not None:
                    peaks[i].append(memory.megabytes)
                if progress:
                    progress(sum(map(len, times)), runs * len(models))
    return [_summary(t, w, threads, x, r, max(p, default=None))
            for t, w, x, r, p in zip(times, warmups, examples, runtimes, peaks, strict=True)]


def onnx_session(model: nn.Module, example: torch.Tensor, threads: int | None = None,
                 tolerance: float = ONNX_TOLERANCE):
    """An ONNX Runtime session (CPU) of ``model`` exported for ``example``'s shape, checked against eager.

    The export goes through a temporary file; the session's output on ``example`` must equal eager
    PyTorch's within ``tolerance`` (max abs difference), or this raises: a wrong export is an error, not
    a silently different latency.
    """
    ort = import_onnxruntime()
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="gzoo-onnx-") as directory:
        path = Path(directory) / "model.onnx"
        export_onnx(model, example, path)
        session = ort_session(path, threads)
    with torch.inference_mode():
        expected = model(example).cpu().numpy()
    # Shrinking the arena after this check run lets the timed passes' peak memory show what they need.
    check = ort.RunOptions()
    check.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    got = session.run(None, {session.get_inputs()[0].name: example.cpu().numpy()}, check)[0]
    difference = float(abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not difference < tolerance:
        raise GzooError(f"{type(model).__name__} exported to ONNX gives outputs {difference:.2g} away from eager "
                        f"PyTorch's (tolerance {tolerance:g}); time it with --runtime eager", exit_code=1)
    return session


@contextmanager
def _runner(model: nn.Module, example: torch.Tensor, runtime: str, threads: int,
            calibration: torch.Tensor | None = None) -> Iterator[Callable[[], object]]:
    """One pass of ``model`` on ``example`` in ``runtime`` as a zero-argument callable, set up for ``threads``."""
    if runtime in OPENVINO_RUNTIMES:
        yield _openvino_runner(model, example, runtime, threads, calibration)
        return
    if runtime == "executorch":
        from gzoo.metrics import executorch, openvino

        if example.device.type != "cpu":
            raise GzooError(f"ExecuTorch runs on the CPU here, not {example.device}; move the input to the CPU")
        yield executorch.session(model, example, openvino.tolerance(model))
        return
    if runtime == "onnxruntime":
        if example.device.type != "cpu":
            raise GzooError(f"ONNX Runtime runs on the CPU here, not {example.device}; move the input to the CPU")
        session = onnx_session(model, example, threads)
        feed = {session.get_inputs()[0].name: example.numpy()}
        yield lambda: session.run(None, feed)
        return
    if runtime != "eager":
        raise GzooError(f"unknown runtime '{runtime}'; choose one of {', '.join(RUNTIMES)}")
    model = model.eval()
    synchronize = torch.cuda.synchronize if example.is_cuda else lambda: None  # CUDA runs asynchronously

    @torch.inference_mode()
    def run() -> None:
        model(example)
        synchronize()

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield run
    finally:
        torch.set_num_threads(previous_threads)


def _openvino_runner(model, example: torch.Tensor, runtime: str, threads: int,
                     calibration: torch.Tensor | None) -> Callable[[], object]:
    from gzoo.metrics import openvino

    if example.device.type != "cpu":
        raise GzooError(f"OpenVINO runs on the CPU here, not {example.device}; move the input to the CPU")
    if not isinstance(model, nn.Module):  # an openvino.Model, converted (and quantized) by the caller
        compiled, feed = openvino.compile_model(model, threads), example.numpy()
        return lambda: compiled(feed)
    int8 = runtime == "openvino-int8"
    if int8 and calibration is None and example.shape[1] != 3:
        calibration = example[:1]  # not an RGB image (a GauGAN label map): calibrated on the timed input itself
    elif int8 and calibration is None:
        from gzoo.data.photos import SKIMAGE_PHOTOS, skimage_inputs
        from gzoo.models import value_range

        calibration = skimage_inputs(SKIMAGE_PHOTOS, *example.shape[2:], value_range(model))
    return openvino.session(model, example, threads, int8, calibration)


class _PeakMemory:
    """Peak memory (MB) that the passes inside the ``with`` block add; ``megabytes`` is None where unreadable."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.megabytes: float | None = None

    def __enter__(self) -> "_PeakMemory":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = _reset_peak_rss()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.cuda:
            self.megabytes = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        elif self.base is not None:
            self.megabytes = (_proc_status_kb("VmHWM") - self.base) / 1024


def _reset_peak_rss() -> int | None:
    """Hand free heap memory back, reset the process's peak RSS and return its RSS in kB (None off Linux)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc keeps freed blocks, which would hide the next pass's need
        Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS
        return _proc_status_kb("VmRSS")
    except (OSError, AttributeError):  # no /proc, or a C library without malloc_trim
        return None


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _summary(times: list[float], warmup: int, threads: int, example: torch.Tensor, runtime: str,
             peak_memory_mb: float | None) -> Latency:
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    median, iqr = statistics.median(times), quartiles[2] - quartiles[0]
    return Latency(median, iqr, len(times), warmup, threads, example.shape[0], runtime, str(example.device),
                   peak_memory_mb, median_stable(times), iqr / median if median > 0 else 0.0)


def _timed_ms(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000
