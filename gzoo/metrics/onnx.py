"""ONNX for every runtime that starts from it: the torch.onnx export and an ONNX Runtime CPU session."""

from pathlib import Path

import torch
from torch import nn

from gzoo.errors import GzooError, missing_extra


def ort_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session of the ONNX file at ``path``, all graph optimisations on, ``threads`` threads."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1  # generators are one chain of ops: nothing to run side by side
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path,
                advice: str = "time it with --runtime eager") -> Path:
    """Export ``model`` for inputs shaped like ``example`` to an ONNX file (torch.export-based exporter), its input
    named ``input`` and its output ``output``; ``advice`` ends the error of a model that does not export."""
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, input_names=["input"],
                                    output_names=["output"])
    except ModuleNotFoundError as err:
        raise missing_extra("ONNX export", "onnx", err.name or "a module") from None
    except Exception as err:  # torch.export and the ONNX translation fail in many ways; all mean "not exportable"
        raise GzooError(f"torch.onnx cannot export {type(model).__name__}: {str(err).strip().splitlines()[0]}; "
                        f"{advice}", exit_code=1) from None
    program.save(str(path))
    return path


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise missing_extra("the onnxruntime runtime", "onnx", "onnxruntime") from None
    return onnxruntime
