"""Export a generator to ONNX or OpenVINO IR, checked against eager PyTorch on a real photo before it is written.

Everything is built in a hidden staging directory beside the output and checked there: the artefact is read back
by its runtime (ONNX Runtime for ONNX, OpenVINO for IR) and run on scikit-image's astronaut photo at the export's
input size; its max abs difference from eager PyTorch must stay within a thousandth of the output range. Only then
is the staging directory renamed into place: an export that does not match is an error, never a file.

``int8`` (OpenVINO only) quantizes the checked fp32 IR with NNCF on a folder of real images, keeping in float the
fewest instance norms that hold ``min_psnr`` dB against fp32 on those images (see ``gzoo.metrics.openvino``).
"""

import json
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo.data.photos import skimage_inputs
from gzoo.deploy.card import export_card
from gzoo.errors import GzooError
from gzoo.metrics import openvino as ov_runtime
from gzoo.metrics.onnx import export_onnx, ort_session
from gzoo.models import value_range
from gzoo.paths import publish_directory
from gzoo.version import __version__

FORMATS = ("onnx", "openvino", "executorch")
FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin"), "executorch": ("model.pte",)}
# What each format needs, and the extra that installs it.
PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "openvino": ("onnx", "onnxscript", "openvino"),
            "executorch": ("executorch",)}
EXTRAS = {"onnx": "deploy", "openvino": "deploy", "executorch": "phone"}
CONFIG = "config.json"
CARD = "README.md"
CHECK_PHOTO = "astronaut"
MAX_CALIBRATION = 300  # images read from a calibration folder at most (NNCF's default subset size)
Progress = Callable[[int, int, str], None]
NOT_WRITTEN = "nothing was written"


def check_request(fmt: str, int8: bool) -> None:
    """Refuse a format gzoo does not write, or int8 in one it does not quantize."""
    if fmt not in FORMATS:
        raise GzooError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if int8 and fmt != "openvino":
        raise GzooError("--int8 writes OpenVINO IR (NNCF's quantization runs best there); use --format openvino")


def export(model: nn.Module, fmt: str, output: Path, input_size: tuple[int, int], *, source: dict[str, Any],
           int8: bool = False, calibration: Path | None = None, min_psnr: float = ov_runtime.MIN_PSNR,
           threads: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Export ``model`` (eval mode, 3-channel image input) for batch-1 inputs of ``input_size`` (height, width).

    ``source`` describes where the model came from (id or directory, arch, arch_args, weights sha256) and goes
    into the export's config.json, which is also returned (with ``path``).
    """
    check_request(fmt, int8)
    if int8 and calibration is None:
        raise GzooError("--int8 needs calibration images: give --calibration DIR, a folder of real images like "
                        "the model's inputs")
    _check_installed(fmt, int8)
    height, width = input_size
    steps = ["checking against eager PyTorch", *(["quantizing to int8"] if int8 else []), "writing"]
    step = _stepper(steps, progress)
    model = model.eval()
    low, high = value_range(model)
    example = skimage_inputs([CHECK_PHOTO], height, width, (low, high))
    try:
        with torch.inference_mode():
            expected = model(example)
    except (RuntimeError, ValueError) as err:
        raise GzooError(f"{type(model).__name__} does not run on a {height}x{width} input: "
                        f"{str(err).splitlines()[0]}; choose another --input size") from None
    if expected.shape[1] != 3 or expected.dim() != 4:
        raise GzooError(f"{type(model).__name__} gives {tuple(expected.shape)} outputs, not an image; gzoo exports "
                        "image-to-image generators")
    calibration_inputs, calibration_files = (None, [])
    if int8:
        from gzoo.data.photos import folder_inputs

        calibration_inputs, calibration_files = folder_inputs(calibration, height, width, (low, high),
                                                              MAX_CALIBRATION)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        step(0)
        tolerance = ov_runtime.tolerance(model)
        if fmt == "onnx":
            difference, conversion, layers = _onnx(model, example, staging, threads), "torch.onnx (dynamo)", None
        elif fmt == "executorch":
            difference, layers = _executorch(model, example, staging), None
            conversion = "torch.export, lowered to ExecuTorch with the XNNPACK partitioner (fp32)"
        else:
            difference, conversion, compiled, ov_model = _openvino(model, example, staging, threads)
            layers = ov_runtime.runtime_precisions(compiled)
        if not difference <= tolerance:
            raise GzooError(f"the {fmt} export of {type(model).__name__} differs from eager PyTorch by "
                            f"{difference:.3g} on a real photo (tolerance {tolerance:g}); {NOT_WRITTEN}",
                            exit_code=1)
        config: dict[str, Any] = {
            "gzoo_version": __version__, "format": fmt, "files": list(FILES[fmt]), "int8": int8,
            "input": {"name": "input", "shape": [1, 3, height, width], "layout": "NCHW", "dtype": "float32"},
            "value_range": [low, high],
            "output": {"shape": list(expected.shape), "value_range": [low, high]},
            "source": source, "conversion": conversion,
            "check": {"against": "eager PyTorch, fp32", "image": f"scikit-image {CHECK_PHOTO}, resized (bicubic) "
                      f"to {height}x{width}", "max_abs_difference": difference, "tolerance": tolerance},
            "layers": layers, "versions": _versions(fmt, int8),
        }
        if int8:
            step(1)
            config["int8"] = _quantize(staging, ov_model, calibration_inputs, calibration, calibration_files, example,
                                       expected, high - low, min_psnr, threads)
            config["layers"] = config["int8"].pop("layers")
        step(len(steps) - 1)
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (staging / CARD).write_text(export_card(config))
        publish_directory(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress:
        progress(len(steps), len(steps), "done")
    return {**config, "path": str(output)}


def _onnx(model: nn.Module, example: torch.Tensor, staging: Path, threads: int | None) -> float:
    """Export to ``staging/model.onnx`` and return the file's max abs difference from eager in ONNX Runtime."""
    path = staging / "model.onnx"
    export_onnx(model, example, path, advice=NOT_WRITTEN)
    session = ort_session(path, threads)
    got = session.run(None, {"input": example.numpy()})[0]
    with torch.inference_mode():
        return ov_runtime.max_difference(got, model(example).numpy())


def _executorch(model: nn.Module, example: torch.Tensor, staging: Path) -> float:
    """Lower to ``staging/model.pte`` (XNNPACK) and return the file's max abs difference from eager in ExecuTorch's
    runtime."""
    from gzoo.metrics import executorch

    method = executorch.load_method(executorch.lower(model, example, staging / "model.pte", NOT_WRITTEN))
    with torch.inference_mode():
        return ov_runtime.max_difference(method.execute([example])[0].numpy(), model(example).numpy())


def _openvino(model: nn.Module, example: torch.Tensor, staging: Path, threads: int | None):
    """Convert, write ``staging/model.xml`` (fp32 weights) and return (difference from eager of the IR read back,
    how it was converted, the compiled IR, the converted model)."""
    ov = ov_runtime.import_openvino()
    with tempfile.TemporaryDirectory(prefix="gzoo-export-") as scratch:
        ov_model, how = ov_runtime.convert(model, example, Path(scratch) / "model.onnx", advice=NOT_WRITTEN)
    ov_model.inputs[0].get_tensor().set_names({"input"})
    ov.save_model(ov_model, str(staging / "model.xml"), compress_to_fp16=False)
    compiled = ov_runtime.compile_model(ov.Core().read_model(str(staging / "model.xml")), threads)
    with torch.inference_mode():
        difference = ov_runtime.max_difference(ov_runtime.run(compiled, example), model(example).numpy())
    conversion = "openvino.convert_model from the torch.onnx export" if how == "onnx" else \
        "openvino.convert_model from the torch module (the ONNX export failed)"
    return difference, conversion, compiled, ov_model


def _quantize(staging: Path, fp32, inputs: torch.Tensor, folder: Path, files: list[str], example: torch.Tensor,
              expected: torch.Tensor, output_range: float, min_psnr: float, threads: int | None) -> dict[str, Any]:
    """Replace the checked fp32 IR in ``staging`` by its int8 quantization, or refuse one that falls short."""
    from gzoo.metrics.fidelity import psnr

    ov = ov_runtime.import_openvino()
    result = ov_runtime.quantize_int8(fp32, inputs, output_range, min_psnr, threads)
    if not result.met:
        raise GzooError(f"int8 reaches only {result.psnr:.1f} dB against fp32 on {folder} (needs {min_psnr:g} dB, "
                        "even with every instance norm in float); export fp32, or calibrate on images more like "
                        "the model's inputs", exit_code=1)
    ov.save_model(result.model, str(staging / "model.xml"), compress_to_fp16=False)
    compiled = ov_runtime.compile_model(ov.Core().read_model(str(staging / "model.xml")), threads)
    got = torch.from_numpy(ov_runtime.run(compiled, example))
    return {
        "method": "NNCF post-training quantization (defaults: CNN, performance preset, fast bias correction)",
        "calibration": {"folder": str(folder), "images": len(files), "first": files[0]},
        "psnr_vs_fp32": result.psnr, "psnr_vs_fp32_min": result.psnr_min, "min_psnr": min_psnr,
        "psnr_vs_eager_on_check_image": psnr(got, expected, output_range),
        "instance_norms": result.norms, "float_norms": result.float_norms, "tried": result.tried,
        "layers": ov_runtime.runtime_precisions(compiled),
    }


def _check_installed(fmt: str, int8: bool) -> None:
    for package in (*PACKAGES[fmt], *(["nncf"] if int8 else [])):
        try:
            __import__(package)
        except ImportError:
            raise GzooError(f"--format {fmt}{' --int8' if int8 else ''} needs {package}: "
                            f"pip install 'gzoo[{EXTRAS[fmt]}]'") from None


def _versions(fmt: str, int8: bool) -> dict[str, str]:
    versions = {}
    for package in ("torch", *PACKAGES[fmt], *(["nncf"] if int8 else [])):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _stepper(steps: list[str], progress: Progress | None) -> Callable[[int], None]:
    def step(index: int) -> None:
        if progress:
            progress(index, len(steps), steps[index])

    return step
