"""`gzoo pull`, `gzoo push`, `gzoo convert` and the maintainers' `gzoo zoo pin`: weights in and out."""

import json
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from gzoo.cli.options import JsonOption
from gzoo.cli.output import note, print_json, progress_bar, result_line
from gzoo.errors import GzooError

# gzoo.zoo.converters.formats(), spelled here so that --help needs no torch (a test keeps the two equal).
CheckpointFormat = Enum("CheckpointFormat", {name: name for name in (
    "cat", "gan-compression", "kill-the-bits", "omgd", "onnx-style", "state-dict", "vintagify")}, type=str)
zoo_app = typer.Typer(help="Maintainer commands for zoo.yaml.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(pull)
    app.command()(push)
    app.command()(convert)
    app.add_typer(zoo_app, name="zoo")


def pull(model_id: Annotated[str, typer.Argument(help="A zoo id with published weights.")],
         revision: Annotated[str | None, typer.Option(help="Hub revision (default: the one zoo.yaml pins).",
                                                      metavar="REVISION")] = None,
         ) -> None:
    """Download an entry's weights (sha256-verified) and convert them into a gzoo model directory."""
    from gzoo import api

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        directory = api.pull(model_id, revision)
    for warning in caught:
        note(f"gzoo: warning: {warning.message}")
    result_line(str(directory))


def push(directory: Annotated[Path, typer.Argument(help="A gzoo model directory.")],
         repo_id: Annotated[str, typer.Argument(help="The Hub model repository, e.g. user/horse2zebra-small.")],
         private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
         revision: Annotated[str | None, typer.Option(help="Branch to commit to, created if missing "
                                                           "(default: main).", metavar="BRANCH")] = None,
         as_json: JsonOption = False) -> None:
    """Upload a model directory to the Hugging Face Hub, its card regenerated with the measured results.

    The Hub and token are huggingface_hub's: HF_ENDPOINT, HF_TOKEN or `hf auth login`.
    """
    from gzoo import api

    with progress_bar("") as advance:
        pushed = api.push(directory, repo_id, private=private, revision=revision, progress=advance)
    if as_json:
        print_json(pushed)
        return
    result_line(pushed["url"])
    note(f"committed {', '.join(pushed['files'])} to {pushed['repo_id']} as {pushed['commit']}")


def convert(source: Annotated[Path, typer.Argument(help="The original checkpoint file.")],
            fmt: Annotated[CheckpointFormat | None, typer.Option("--from", help="Its format; required.")] = None,
            output: Annotated[Path | None, typer.Option("-o", "--output", help="The model directory to write; "
                                                        "required.")] = None,
            arch: Annotated[str | None, typer.Option(help="Architecture, where the format cannot tell (`gzoo list "
                                                          "--archs` lists them).", metavar="NAME")] = None,
            arch_args: Annotated[str | None, typer.Option("--arch-args", help='JSON, e.g. \'{"ngf": 16}\'.',
                                                          metavar="JSON")] = None,
            config: Annotated[str | None, typer.Option(help="GAN Compression config string, e.g. "
                                                            "16_16_32_16_32_32_16_16.", metavar="CONFIG")] = None,
            ) -> None:
    """Convert an original checkpoint (gan-compression, omgd, cat, kill-the-bits, vintagify, onnx-style,
    state-dict) into a gzoo model directory."""
    from gzoo import api

    try:
        args = json.loads(arch_args) if arch_args else {}
    except ValueError as err:
        raise GzooError(f"--arch-args is not valid JSON ({err}); write it like '{{\"ngf\": 16}}'") from None
    if not isinstance(args, dict):
        raise GzooError("--arch-args must be a JSON object like '{\"ngf\": 16}'")
    if config:
        args["config"] = config
    result_line(str(api.convert(source, fmt.value if fmt else None, output, arch, args)))


@zoo_app.command("pin")
def zoo_pin(model_id: Annotated[str, typer.Argument(help="The entry whose weights to pin.")]) -> None:
    """Resolve an entry's revision to a commit and record it with the file's sha256 in zoo.yaml (online)."""
    from gzoo import api

    pinned = api.pin(model_id)
    result_line(f"{model_id}: " + ", ".join(f"{k} {v}" for k, v in pinned.items()))
