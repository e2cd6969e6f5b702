"""`gzoo export`: a model as ONNX, OpenVINO IR (fp32, or int8 with NNCF) or ExecuTorch, checked before it is written."""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from gzoo.cli.options import JsonOption
from gzoo.cli.output import note, print_json, progress_bar, result_line


class ExportFormat(str, Enum):  # gzoo.deploy.FORMATS
    onnx = "onnx"
    openvino = "openvino"
    executorch = "executorch"


def register(app: typer.Typer) -> None:
    app.command()(export)


def export(model: Annotated[str, typer.Argument(help="A zoo id (pulled when needed) or a model directory.")],
           export_format: Annotated[ExportFormat, typer.Option("--format", help="onnx (ONNX Runtime), openvino "
                                                                "(OpenVINO IR) or executorch (XNNPACK, phones).")],
           output: Annotated[Path | None, typer.Option(
               "-o", "--output", help="The export directory (default: exports/NAME-FORMAT[-int8]).")] = None,
           int8: Annotated[bool, typer.Option("--int8", help="Quantize to int8 with NNCF (OpenVINO).")] = False,
           calibration: Annotated[Path | None, typer.Option(
               "--calibration", help="A folder of real images for --int8 (default: the held-out crops of the "
               "gzoo compress run that made the model).", metavar="DIR")] = None,
           input_size: Annotated[str | None, typer.Option(
               "--input", help="Input size HxW (default: the model's).", metavar="HxW")] = None,
           min_psnr: Annotated[float | None, typer.Option(
               "--min-psnr", help="Least PSNR of int8 against fp32 on the calibration images, in dB.")] = None,
           threads: Annotated[int | None, typer.Option(help="CPU threads for the checks.")] = None,
           as_json: JsonOption = False) -> None:
    """Export a model for a fast runtime; the export is checked against eager PyTorch on a real photo first."""
    from gzoo import api

    with progress_bar("exporting") as advance:
        exported = api.export(model, export_format.value, output, int8=int8, calibration=calibration,
                              input_size=input_size, min_psnr=min_psnr, threads=threads, progress=advance)
    if as_json:
        print_json(exported)
        return
    check = exported["check"]
    note(f"{exported['conversion']}; against eager PyTorch on a real photo: max abs difference "
         f"{check['max_abs_difference']:.3g} (tolerance {check['tolerance']:g})")
    if exported["int8"]:
        quantized = exported["int8"]
        note(f"int8: PSNR {quantized['psnr_vs_fp32']:.1f} dB against fp32 on {quantized['calibration']['images']} "
             f"images of {quantized['calibration']['folder']} (worst {quantized['psnr_vs_fp32_min']:.1f} dB); "
             f"instance norms kept in float: {len(quantized['float_norms'])}")
    result_line(exported["path"])
