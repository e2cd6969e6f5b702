"""ExecuTorch with its XNNPACK backend (the CPU backend of its Android and iOS runtimes): a torch generator lowered
to a program, loaded in ExecuTorch's Python runtime, checked against eager PyTorch.

Timed here it is ExecuTorch on this CPU, not on a phone: the ratios between models carry over better than the
milliseconds.
"""

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo.errors import GzooError

PHONE_EXTRA = "pip install 'gzoo[phone]'"


def lower(model: nn.Module, example: torch.Tensor, path: Path, advice: str = "time it with --runtime eager") -> Path:
    """Write ``model``, exported for inputs shaped like ``example`` and lowered with the XNNPACK partitioner, as an
    ExecuTorch program at ``path``; ``advice`` ends the error of a model that does not lower."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        raise GzooError(f"ExecuTorch is not installed: {PHONE_EXTRA}") from None
    try:
        program = to_edge_transform_and_lower(torch.export.export(with_affine_batch_norms(model.eval()), (example,)),
                                              partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as err:  # torch.export and the lowering fail in many ways; all mean "not exportable"
        text = str(err).strip()
        raise GzooError(f"ExecuTorch cannot lower {type(model).__name__}: "
                        f"{text.splitlines()[0] if text else type(err).__name__}; {advice}", exit_code=1) from None
    Path(path).write_bytes(program.buffer)
    return Path(path)


def with_affine_batch_norms(model: nn.Module) -> nn.Module:
    """``model``, or a copy whose parameter-free batch norms (SPADE's) carry a weight of ones and a bias of zeros:
    the same function, which ExecuTorch's lowering needs (its DecomposeBatchNorm pass fails on a norm without a
    weight)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.affine for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.affine:
            module.weight = nn.Parameter(torch.ones(module.num_features))
            module.bias = nn.Parameter(torch.zeros(module.num_features))
            module.affine = True
    return model


def load_method(path: Path):
    """The ``forward`` method of an ExecuTorch program file, loaded in ExecuTorch's Python runtime."""
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward")


def session(model: nn.Module, example: torch.Tensor, tolerance: float) -> Callable[[], Any]:
    """``model`` lowered and loaded, checked on ``example`` within ``tolerance`` (max abs difference from eager),
    as a zero-argument pass on ``example``."""
    from gzoo.metrics.openvino import max_difference

    with tempfile.TemporaryDirectory(prefix="gzoo-executorch-") as directory:
        method = load_method(lower(model, example, Path(directory) / "model.pte"))
    with torch.inference_mode():
        difference = max_difference(method.execute([example])[0].numpy(), model(example).numpy())
    if not difference <= tolerance:
        raise GzooError(f"{type(model).__name__} lowered to ExecuTorch gives outputs {difference:.2g} away from eager "
                        f"PyTorch's (tolerance {tolerance:g}); time it with --runtime eager", exit_code=1)
    return lambda: method.execute([example])
