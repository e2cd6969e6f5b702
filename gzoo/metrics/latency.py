"""Wall-clock latency of a model: median (and interquartile range) of timed runs after warm-up."""

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


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

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(model: nn.Module, example: torch.Tensor, warmup: int = 2, runs: int = 20,
                    min_runs: int = 3, max_seconds: float = 3.0, threads: int | None = None,
                    single_run_above: float | None = None) -> Latency:
    """Time ``model(example)`` in eager PyTorch on the CPU.

    Runs ``warmup`` untimed passes, then up to ``runs`` timed ones, stopping early once ``min_runs`` are
    done and ``max_seconds`` have passed (so heavy models do not stall a leaderboard). A model whose
    first pass takes over ``single_run_above`` seconds gets only that pass, timed cold (``runs`` 1,
    ``warmup`` 0): for such models the first pass is within run-to-run noise of later ones.

    Timings assume an otherwise idle machine: with every core busy elsewhere, PyTorch's spinning worker
    threads make small-op networks (mobile generators) several times slower.
    """
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    torch.set_num_threads(threads)
    try:
        model = model.eval()
        with torch.inference_mode():
            first = _timed_ms(model, example)
            if single_run_above is not None and first > 1000 * single_run_above:
                times, warmup = [first], 0
            else:
                times = [] if warmup else [first]
                for _ in range(warmup - 1):
                    model(example)
                start = time.perf_counter()
                while len(times) < runs and (len(times) < min_runs or time.perf_counter() - start < max_seconds):
                    times.append(_timed_ms(model, example))
    finally:
        torch.set_num_threads(previous_threads)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Latency(statistics.median(times), quartiles[2] - quartiles[0], len(times), warmup, threads,
                   example.shape[0])


def _timed_ms(model: nn.Module, example: torch.Tensor) -> float:
    start = time.perf_counter()
    model(example)
    return (time.perf_counter() - start) * 1000
