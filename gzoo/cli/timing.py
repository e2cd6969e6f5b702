"""`gzoo bench`: latency of one model, or of two side by side in one process."""

from typing import Annotated

import typer

from gzoo.cli.options import JsonOption, Runtime, RuntimeOption
from gzoo.cli.output import Column, print_json, print_table, progress_bar, wide_console

BENCH_COLUMNS = (Column("model", "id"), Column("weights"), Column("input"), Column("median ms", justify="right"),
                 Column("IQR ms", justify="right"), Column("peak memory MB", justify="right"))


def register(app: typer.Typer) -> None:
    app.command()(bench)


def bench(model: Annotated[str, typer.Argument(help="A zoo id (its architecture, random weights) or a model "
                                                   "directory.")],
          vs: Annotated[str | None, typer.Option("--vs", help="A second model, timed in alternating turns.",
                                                 metavar="ID|DIR")] = None,
          runtime: RuntimeOption = Runtime.eager,
          threads: Annotated[int | None, typer.Option(help="CPU threads (default: one per core).")] = None,
          batch: Annotated[int, typer.Option(help="Images per pass.")] = 1,
          runs: Annotated[int, typer.Option(help="Timed passes per model.")] = 10,
          as_json: JsonOption = False) -> None:
    """Time a model on the CPU (median of timed passes, peak memory); with --vs, compare two in one run."""
    from gzoo import api

    with progress_bar("") as advance:
        result = api.bench(model, vs, runtime.value, threads, batch, runs, progress=advance)
    if as_json:
        print_json(result)
        return
    console = wide_console()
    console.print(f"{api.RUNTIME_NAMES[result['runtime']]}, {result['cpu']}, {result['threads']} threads, "
                  f"batch {result['batch']}, median of {result['runs']} timed passes"
                  + (" in alternating turns" if vs else ""), highlight=False, markup=False, soft_wrap=True)
    print_table(BENCH_COLUMNS, [[m["model"], m["weights"], m["input"], f"{m['median_ms']:.2f}", f"{m['iqr_ms']:.2f}",
                                 "-" if m["peak_memory_mb"] is None else f"{m['peak_memory_mb']:.1f}"]
                                for m in result["models"]], console)
    if result["ratio"] is not None:
        a, b = (m["model"] for m in result["models"])
        faster, slower, ratio = (a, b, result["ratio"]) if result["ratio"] >= 1 else (b, a, 1 / result["ratio"])
        console.print(f"{faster} is {ratio:.1f}x faster than {slower}", highlight=False, markup=False, soft_wrap=True)
