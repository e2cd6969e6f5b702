"""Options several commands share, spelled once."""

from enum import Enum
from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
MethodOption = Annotated[str | None, typer.Option("--method", help="Only entries of this method.", metavar="METHOD")]
TaskOption = Annotated[str | None, typer.Option("--task", help="Only entries of this task.", metavar="TASK")]


class Runtime(str, Enum):  # gzoo.metrics.latency.RUNTIMES
    eager = "eager"
    onnxruntime = "onnxruntime"
    openvino = "openvino"
    openvino_int8 = "openvino-int8"
    executorch = "executorch"


RuntimeOption = Annotated[Runtime, typer.Option(
    "--runtime", help="eager PyTorch, ONNX Runtime (the onnx extra), OpenVINO fp32 or int8 (deploy), ExecuTorch "
    "(phone).")]
