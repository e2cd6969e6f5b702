"""Multiply-accumulates, counted once for every model by fvcore's JIT tracer with our own op handles.

Two conventions, always labelled:

- ``macs``: true multiply-accumulates of convolutions, linear layers and matrix products. A transposed
  conv costs one MAC per input element per weight it touches (input x weight volume).
- ``macs_paper``: the torchprofile convention in which GAN Compression, OMGD and CAT published their
  tables. Convs count output elements x input channels x kernel area, so a stride-2 transposed conv
  costs 4x its true MACs; every norm (batch, instance, layer, group) counts one per output element;
  elementwise mul, leaky ReLU and average pooling one per output element; bilinear upsampling four.
"""

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch import nn

# Ops that cost nothing in either convention; naming them keeps fvcore from warning about them.
ZERO_COST_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::div", "aten::cat", "aten::clamp", "aten::relu",
    "aten::relu_", "aten::tanh", "aten::sigmoid", "aten::hardtanh", "aten::hardtanh_", "aten::dropout",
    "aten::feature_dropout", "aten::reflection_pad2d", "aten::replication_pad2d", "aten::pad", "aten::constant_pad_nd",
    "aten::max_pool2d", "aten::upsample_nearest2d", "aten::flatten", "aten::view", "aten::reshape", "aten::slice",
    "aten::size", "aten::select", "aten::contiguous", "aten::to", "aten::expand", "aten::unsqueeze", "aten::squeeze",
    "aten::permute", "aten::transpose", "aten::t", "aten::chunk", "aten::split", "aten::softmax", "aten::exp",
    "aten::sum", "aten::pow", "aten::sqrt", "aten::abs", "aten::clone", "aten::zeros", "aten::ones", "aten::numel",
    "aten::gelu", "aten::silu", "aten::hardswish", "aten::mish", "aten::copy_", "aten::fill_", "aten::zero_",
    "aten::new_ones", "aten::new_zeros", "aten::ones_like", "aten::zeros_like", "aten::full", "aten::arange",
    "aten::sigmoid_", "aten::tanh_", "aten::expand_as", "aten::index", "aten::index_select", "aten::repeat",
)


@dataclass(frozen=True)
class MacCount:
    macs: int
    macs_paper: int


def _shape(value: Any) -> list[int]:
    return value.type().sizes()


def _counts(macs: int, macs_paper: int) -> Counter:
    return Counter({"macs": macs, "macs_paper": macs_paper})


def _convolution(inputs: list, outputs: list) -> Counter:
    x_shape, w_shape, out_shape = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    transposed = bool(inputs[6].toIValue())
    kernel = prod(w_shape[2:])
    if transposed:
        # weight [in, out/groups, k, k]: every input element meets out/groups * k*k weights.
        true_macs = prod(x_shape) * w_shape[1] * kernel
    else:
        # weight [out, in/groups, k, k]: every output element needs in/groups * k*k products.
        true_macs = prod(out_shape) * w_shape[1] * kernel
    # torchprofile reads the input channels from whichever weight axis is not the output channels.
    paper_in = w_shape[1] if out_shape[1] == w_shape[0] else w_shape[0]
    return _counts(true_macs, prod(out_shape) * paper_in * kernel)


def _matmul(inputs: list, outputs: list) -> Counter:
    a, b = _shape(inputs[0]), _shape(inputs[1])
    if len(a) == 1 and len(b) == 1:
        macs = a[0]
    else:
        # Every output element is a dot product over the shared dimension.
        shared = a[-1]
        macs = prod(_shape(outputs[0])) * shared
    return _counts(macs, macs)


def _linear(inputs: list, outputs: list) -> Counter:
    macs = prod(_shape(outputs[0])) * _shape(inputs[1])[-1]
    return _counts(macs, macs)


def _addmm(inputs: list, outputs: list) -> Counter:
    n, m = _shape(inputs[1])
    p = _shape(inputs[2])[1]
    return _counts(n * m * p, n * m * p)


def _per_output_element(factor: int):
    def handle(inputs: list, outputs: list) -> Counter:
        return _counts(0, factor * prod(_shape(outputs[0])))

    return handle


OP_HANDLES = {
    "aten::_convolution": _convolution,
    "aten::matmul": _matmul,
    "aten::mm": _matmul,
    "aten::bmm": _matmul,
    "aten::linear": _linear,
    "aten::addmm": _addmm,
    "aten::batch_norm": _per_output_element(1),
    "aten::instance_norm": _per_output_element(1),
    "aten::layer_norm": _per_output_element(1),
    "aten::group_norm": _per_output_element(1),
    "aten::mul": _per_output_element(1),
    "aten::mul_": _per_output_element(1),
    "aten::leaky_relu": _per_output_element(1),
    "aten::leaky_relu_": _per_output_element(1),
    "aten::adaptive_avg_pool2d": _per_output_element(1),
    "aten::avg_pool2d": _per_output_element(1),
    "aten::mean": _per_output_element(1),
    "aten::upsample_bilinear2d": _per_output_element(4),
}


class UncountedOperatorError(Exception):
    """The traced model uses an op we have no rule for; its MACs would silently be missing."""


def count_macs(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> MacCount:
    """MACs of one forward pass of ``model`` on ``example`` (batch included), in both conventions."""
    with _quiet_fvcore():
        from fvcore.nn.jit_analysis import JitModelAnalysis

    inputs = example if isinstance(example, tuple) else (example,)
    analysis = JitModelAnalysis(model, inputs)
    analysis.set_op_handle(**OP_HANDLES)
    analysis.set_op_handle(**dict.fromkeys(ZERO_COST_OPS))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad(), _quiet_fvcore():
        by_operator = analysis.by_operator()
        unsupported = analysis.unsupported_ops()
    if unsupported:
        names = ", ".join(sorted(unsupported))
        raise UncountedOperatorError(f"no MAC rule for {names}; add one to gzoo/metrics/macs.py")
    return MacCount(int(by_operator.get("macs", 0)), int(by_operator.get("macs_paper", 0)))


class _quiet_fvcore:
    """Keep fvcore's and torch.jit's deprecation chatter out of the user's terminal."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("fvcore")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)


def count_params(model: nn.Module) -> int:
    """Every parameter of the deployed model (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
