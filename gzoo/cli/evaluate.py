"""`gzoo fid` and `gzoo eval`: measure images and models, and store what was measured."""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from gzoo.cli.options import JsonOption
from gzoo.cli.output import Column, note, print_json, print_table, progress_bar, result_line, wide_console

EVAL_COLUMNS = (Column("metric", "id"), Column("value", justify="right"), Column("protocol", "wrap"))


def register(app: typer.Typer) -> None:
    app.command()(fid)
    app.command("eval")(eval_command)


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
    from gzoo import api

    with progress_bar("Inception features") as advance:
        result = api.fid(first, second, with_kid, kid_subset_size, kid_subsets, batch_size,
                         str(inception_weights) if inception_weights else None, progress=advance)
    if as_json:
        print_json(result)
        return
    result_line(f"FID {result['fid']:.4f}")
    if with_kid:
        result_line(f"KID {result['kid_mean']:.6f} ± {result['kid_std']:.6f} "
                    f"({result['kid_subsets']} subsets of {result['kid_subset_size']})")
    for side in result["inputs"]:
        if "images" in side:
            cached = ", features cached" if side["features_cached"] else ""
            skipped = f", {side['skipped']} non-image files skipped" if side["skipped"] else ""
            note(f"{side['path']}: {side['images']} images {side['size']}{skipped}{cached}")
    note(f"Inception weights: {result['inception']['source']} ({result['inception']['path']})")


class Mode(str, Enum):
    auto = "auto"
    paired = "paired"
    unpaired = "unpaired"
    single = "single"
    cityscapes = "cityscapes"


class Direction(str, Enum):
    AtoB = "AtoB"
    BtoA = "BtoA"


def eval_command(
        model: Annotated[str, typer.Argument(help="A zoo id or a model directory.")],
        data: Annotated[Path, typer.Option("--data", help="Dataset folder: A|B pairs, testA/testB folders, or a "
                                                          "folder of images; class folders for classifiers; a "
                                                          "Cityscapes root for label-map generators.")],
        metrics: Annotated[str | None, typer.Option(help="Comma-separated: fid,kid,psnr,ssim,miou,latency "
                                                         "(generators), top1,top5,latency (classifiers) "
                                                         "[default: every one the data allows]",
                                                    metavar="METRIC,...")] = None,
        teacher: Annotated[str | None, typer.Option(help="Teacher (zoo id or directory) for PSNR/SSIM "
                                                         "[default: the model's own]", metavar="ID|DIR")] = None,
        reference: Annotated[Path | None, typer.Option(help="FID/KID reference: a folder of real images or an "
                                                            ".npz (mu, sigma) [default: the data's targets, "
                                                            "else the teacher's outputs]")] = None,
        mode: Annotated[Mode, typer.Option(help="The data layout (auto: found from the folder).")] = Mode.auto,
        direction: Annotated[Direction, typer.Option(help="Paired and unpaired data: which side is the input.")
                             ] = Direction.AtoB,
        batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 8,
        max_images: Annotated[int | None, typer.Option(help="Only the first N inputs.")] = None,
        save_images: Annotated[Path | None, typer.Option(help="Write the generated images here.")] = None,
        kid_subset_size: Annotated[int | None, typer.Option(help="KID subset size.")] = None,
        inception_weights: Annotated[Path | None, typer.Option(help="torch-fidelity Inception weights file.")
                                     ] = None,
        threads: Annotated[int | None, typer.Option(help="CPU threads for the latency.")] = None,
        segmenter: Annotated[Path | None, typer.Option(help="mIoU: DRN-D-105 Cityscapes weights "
                                                            "(drn-d-105_ms_cityscapes.pth).")] = None,
        labels: Annotated[Path | None, typer.Option(help="mIoU: train-id label maps named like the inputs "
                                                         "(stem.png).")] = None,
        split: Annotated[str, typer.Option(help="Cityscapes root: the split of gtFine/ and leftImg8bit/ to read.",
                                                   metavar="SPLIT")
                         ] = "val",
        no_store: Annotated[bool, typer.Option("--no-store", help="Do not write to the results store.")] = False,
        as_json: JsonOption = False) -> None:
    """Measure a model on a dataset (FID, KID, PSNR/SSIM against its teacher, top-1, latency) and store it."""
    from gzoo import api

    with progress_bar("evaluating") as advance:
        result = api.evaluate(model, data, metrics.split(",") if metrics else None, teacher, progress=advance,
                              store=not no_store, mode=mode.value, direction=direction.value, reference=reference,
                              batch_size=batch_size, max_images=max_images, save_images=save_images,
                              kid_subset_size=kid_subset_size,
                              inception_weights=str(inception_weights) if inception_weights else None,
                              threads=threads, segmenter=segmenter, labels=labels, split=split)
    if as_json:
        print_json(result)
        return
    reasons: dict[str, list[str]] = {}
    for metric, why in result["skipped"].items():
        reasons.setdefault(why, []).append(metric)
    for why, skipped in reasons.items():
        note(f"not measured: {', '.join(skipped)}: {why}")
    for warning in result["warnings"]:
        note(f"gzoo: warning: {warning}")
    console = wide_console()
    console.print(f"{result['model']} on {result['data']}", highlight=False, markup=False, soft_wrap=True)
    print_table(EVAL_COLUMNS, [[metric, value if isinstance(value, str) else f"{value:.4f}",
                                result["protocols"][metric]["name"]] for metric, value in result["metrics"].items()],
                console)
    if result["stored"]:
        note("stored in the results store; `gzoo leaderboard` shows the latest values")
