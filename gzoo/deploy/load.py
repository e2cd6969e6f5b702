"""Reading an export back, and the small decisions around an export: its input size and its calibration images."""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gzoo.deploy.export import CONFIG, FILES
from gzoo.errors import GzooError

HELD_OUT = "held_out"  # where `gzoo compress` leaves the held-out crops, inside its run directory


def load_export(directory: str | Path, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The export in ``directory`` as a function of an N x 3 x H x W float batch (its runtime on the CPU)."""
    from gzoo.metrics import openvino as ov_runtime
    from gzoo.metrics.onnx import ort_session

    directory = Path(directory)
    config = read_export_config(directory)
    missing = [f for f in FILES[config["format"]] if not (directory / f).is_file()]
    if missing:
        raise GzooError(f"{directory} lacks {missing[0]}; export the model again")
    if config["format"] == "onnx":
        session = ort_session(directory / "model.onnx", threads)

        def run_one(x: np.ndarray) -> np.ndarray:
            return session.run(None, {"input": x})[0]
    elif config["format"] == "executorch":
        from gzoo.metrics.executorch import load_method

        method = load_method(directory / "model.pte")

        def run_one(x: np.ndarray) -> np.ndarray:
            return method.execute([torch.from_numpy(x)])[0].numpy()
    else:
        ov = ov_runtime.import_openvino()
        compiled = ov_runtime.compile_model(ov.Core().read_model(str(directory / "model.xml")), threads)

        def run_one(x: np.ndarray) -> np.ndarray:
            return compiled(x)[0]

    expected = tuple(config["input"]["shape"][1:])

    def run(batch: torch.Tensor) -> torch.Tensor:
        if tuple(batch.shape[1:]) != expected:
            raise GzooError(f"this export takes N x {' x '.join(map(str, expected))} inputs, not "
                            f"{' x '.join(map(str, batch.shape))}; export again with --input for another size")
        return torch.from_numpy(np.concatenate([run_one(x[None].float().numpy()) for x in batch]))

    return run


def read_export_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise GzooError(f"{directory} is not a gzoo export (no {CONFIG}); make one with `gzoo export`") from None
    except ValueError as err:
        raise GzooError(f"{path} is not valid JSON ({err}); export the model again") from None
    if config.get("format") not in FILES:
        raise GzooError(f"{path} names no export format gzoo reads ({config.get('format')!r}); export again")
    return config


def parse_size(size: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"480x640"`` (height x width) or a (height, width) pair, checked."""
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
        if not match:
            raise GzooError(f"--input must be HEIGHTxWIDTH, e.g. 256x256 or 480x640, not '{size}'")
        size = (int(match[1]), int(match[2]))
    height, width = size
    if height < 1 or width < 1:
        raise GzooError(f"--input must be positive, not {height}x{width}")
    return int(height), int(width)


def default_calibration(config: dict[str, Any], model_name: str) -> Path:
    """The held-out crops a `gzoo compress` run left beside the model (its config's lineage), else a clear error."""
    run = (config.get("lineage") or {}).get("run_directory")
    if run and (Path(run) / HELD_OUT).is_dir():
        return Path(run) / HELD_OUT
    where = f" (its run directory {run} has no {HELD_OUT}/ folder)" if run else ""
    raise GzooError(f"--int8 needs calibration images for {model_name}{where}: give --calibration DIR, a folder of "
                    "real images like the model's inputs")
