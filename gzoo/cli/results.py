"""`gzoo results export`: the whole results store with the provenance of every number."""

from pathlib import Path
from typing import Annotated

import typer

from gzoo.cli.output import note

results_app = typer.Typer(help="The results store: every number gzoo measured, with its provenance.",
                          no_args_is_help=True)
EXPORT_FORMATS = ("json", "csv")


def register(app: typer.Typer) -> None:
    app.add_typer(results_app, name="results")


@results_app.command()
def export(output_format: Annotated[str, typer.Option("--format", help="json or csv.", metavar="json|csv")] = "json",
           output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file (atomically) "
                                                       "instead of stdout.")] = None,
           model: Annotated[str | None, typer.Option("--model", help="Only this model's results (a zoo id or a "
                                                     "model directory's absolute path).", metavar="ID|DIR")] = None,
           ) -> None:
    """Export every stored result with its provenance (weights and data hashes, protocol, device, versions, date)."""
    import sys

    from gzoo import api, report
    from gzoo.report.results import results_csv

    fmt = report.output_format(output_format, None, EXPORT_FORMATS, default="json")
    if output:
        report.check_destination(output)
    document = api.results_export(model)
    text = results_csv(document) if fmt == "csv" else report.to_json(document)
    if output is None:
        sys.stdout.write(text)
        return
    report.write_files({output: text.encode()})
    note(f"wrote {output} ({len(document['results'])} results)")
