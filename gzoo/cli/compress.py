"""`gzoo compress`: run a recipe and show the exported student beside its teacher."""

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from gzoo.cli.options import JsonOption
from gzoo.cli.output import Column, human, note, print_json, print_table, progress_bar, wide_console
from gzoo.errors import Interrupted


def register(app: typer.Typer) -> None:
    app.command()(compress)


def compress(
        recipe: Annotated[Path, typer.Argument(help="A recipe file (see recipes/).")],
        teacher: Annotated[str | None, typer.Option(help="The teacher: zoo id or model directory "
                                                         "(default: the recipe's).", metavar="ID|DIR")] = None,
        data: Annotated[Path | None, typer.Option(help="The dataset folder (default: the recipe's).")] = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Run directory "
                                                    "(default: runs/<recipe name>).")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run in the run directory.")] = False,
        overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe value: "
                                                            "section.key=value (repeatable).",
                                                            metavar="SECTION.KEY=VALUE")] = None,
        as_json: JsonOption = False) -> None:
    """Compress a teacher with a recipe: train, search, fine-tune, export and evaluate the student."""
    from gzoo import api

    with progress_bar("") as advance:
        shown = {"stage": None}
        advance(0, None, "setting up: recipe, teacher, data")

        def report(stage: str, done: int, total: int, losses: dict[str, float]) -> None:
            if stage != shown["stage"]:
                shown["stage"] = stage
                note(f"stage {stage}")
            advance(done, total, " ".join([stage, *(f"{k} {v:.3g}" for k, v in losses.items())]))

        try:
            summary = api.compress(recipe, teacher, data, output, resume, overrides or [], progress=report,
                                   notify=note)
        except Interrupted as err:
            again = shlex.join(["gzoo", *sys.argv[1:], *([] if resume else ["--resume"])])
            raise Interrupted(f"{err}; continue with: {again}") from None
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun the first process reports
    if as_json:
        print_json(summary)
        return
    macs = human(summary["student_macs_paper"])
    if "teacher_macs_paper" in summary:  # a student trained with no teacher has nothing to compare with
        macs = f"{human(summary['teacher_macs_paper'])} -> {macs} ({summary['macs_reduction']:.1f}x fewer)"
    rows = [[f"MACs (paper convention, {summary['macs_input']})", macs]]
    for metric, value in summary["metrics"].items():
        rows.append([f"{metric} (held-out)", value if isinstance(value, str) else f"{value:.4f}"])
    if "identity_psnr" in summary:
        rows.append(["psnr of the input itself (identity baseline)", f"{summary['identity_psnr']:.4f}"])
    for label, value in summary.get("baselines", {}).items():  # a method's own comparisons, measured in the run
        rows.append([label, f"{value:.4f}"])
    console = wide_console()
    what = f" {summary['config']}" if "config" in summary else ""  # a searched method's chosen config
    console.print(f"student{what} in {summary['student']}", highlight=False, markup=False,
                  soft_wrap=True)  # a path: never folded
    print_table((Column(""), Column("value", "wrap")), rows, console)
    note("stored in the results store; `gzoo leaderboard` shows it")
