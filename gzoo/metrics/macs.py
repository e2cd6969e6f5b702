"""Multiply-accumulates, counted for every model by one rule per operator.

The model runs under a dispatch mode that sees every ATen operator with its tensors' shapes. Built on
the ``meta`` device, nothing is computed: GauGAN at 512x256 is counted in a fraction of a second where
a traced run (fvcore's JIT analysis, which this replaced) took seven. Tests check the true MACs against fvcore's.

Two conventions, always labelled:

- ``macs``: true multiply-accumulates of convolutions, linear layers and matrix products. A transposed
  conv costs one MAC per input element per weight it touches (input x weight volume).
- ``macs_paper``: the count of torchprofile 0.0.1, the release GAN Compression and CAT pin and the one whose
  counts reproduce most published tables (14 of the 17 MACs rows of GAN Compression's README; later releases
  8). Convs count output elements x input channels x kernel area, so a stride-2 transposed conv costs 4x its
  true MACs; linear layers and matrix products their true MACs; instance and layer norms one per output
  element, affine or not; elementwise mul and average pooling (mean) one per output element; batch norm,
  group norm, activations (leaky ReLU included) and upsampling nothing. Tests check it against torchprofile
  0.0.1 itself on every zoo architecture.

ATen sees an instance norm as a batch norm over a reshaped input, so a function mode records which
``torch.nn.functional`` norm is running while the dispatch mode counts it.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

# Operators that cost nothing in either convention (data movement, activations, additions). Any operator
# in neither this list nor RULES stops the count: its MACs would otherwise silently be missing.
ZERO_COST_OPS = frozenset((
    "add", "add_", "sub", "sub_", "rsub", "div", "div_", "neg", "cat", "stack", "clamp", "clamp_", "relu", "relu_",
    "tanh", "tanh_", "sigmoid", "sigmoid_", "hardtanh", "hardtanh_", "gelu", "silu", "silu_", "hardswish",
    "hardswish_", "mish", "softmax", "_softmax", "exp", "sum", "pow", "sqrt", "rsqrt", "abs", "dropout",
    "native_dropout", "reflection_pad2d", "replication_pad2d", "constant_pad_nd", "pad", "max_pool2d",
    "max_pool2d_with_indices", "upsample_nearest2d", "view", "_unsafe_view", "reshape", "flatten", "slice",
    "select", "expand", "unsqueeze", "unsqueeze_", "squeeze", "squeeze_", "permute", "transpose", "t", "split",
    "split_with_sizes", "chunk", "clone", "contiguous", "_to_copy", "copy_", "fill_", "zero_", "empty",
    "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "new_ones", "new_zeros",
    "new_empty", "full", "arange", "repeat", "index", "index_select", "detach", "alias", "lift_fresh",
    "_local_scalar_dense", "leaky_relu", "leaky_relu_", "upsample_bilinear2d",
))

# The norm an ATen norm operator belongs to, told by the function that called it.
NORM_FUNCTIONS = {
    F.batch_norm: "batch", torch.batch_norm: "batch", F.instance_norm: "instance", torch.instance_norm: "instance",
    F.layer_norm: "layer", torch.layer_norm: "layer", F.group_norm: "group", torch.group_norm: "group",
}
PAPER_COUNTED_NORMS = frozenset(("instance", "layer"))  # torchprofile 0.0.1: batch norm 0, group norm unknown to it
NORM_OPS = frozenset((  # instance norm reaches ATen as a batch norm over the reshaped input
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "native_layer_norm", "native_group_norm",
))


@dataclass(frozen=True)
class MacCount:
    macs: int
    macs_paper: int


def _convolution(args: tuple, out: torch.Tensor) -> tuple[int, int]:
    x, weight, transposed = args[0], args[1], bool(args[6])
    kernel = prod(weight.shape[2:])
    if transposed:
        # weight [in, out/groups, k, k]: every input element meets out/groups * k*k weights.
        true_macs = x.numel() * weight.shape[1] * kernel
    else:
        # weight [out, in/groups, k, k]: every output element needs in/groups * k*k products.
        true_macs = out.numel() * weight.shape[1] * kernel
    # torchprofile reads the input channels from whichever weight axis is not the output channels.
    paper_in = weight.shape[1] if out.shape[1] == weight.shape[0] else weight.shape[0]
    return true_macs, out.numel() * paper_in * kernel


def _matrix_product(args: tuple, out: torch.Tensor) -> tuple[int, int]:
    # mm(a, b) and bmm(a, b): every output element is a dot product over a's last dimension.
    macs = out.numel() * args[0].shape[-1]
    return macs, macs


def _addmm(args: tuple, out: torch.Tensor) -> tuple[int, int]:
    return _matrix_product(args[1:], out)  # addmm(bias, a, b), as a linear layer reaches ATen


def _per_output_element(factor: int) -> Callable[[tuple, torch.Tensor], tuple[int, int]]:
    def rule(args: tuple, out: torch.Tensor) -> tuple[int, int]:
        return 0, factor * out.numel()

    return rule


RULES: dict[str, Callable[[tuple, torch.Tensor], tuple[int, int]]] = {
    "convolution": _convolution,
    "mm": _matrix_product,
    "bmm": _matrix_product,
    "addmm": _addmm,
    **dict.fromkeys(("mul", "mul_", "avg_pool2d", "_adaptive_avg_pool2d", "mean"), _per_output_element(1)),
}


class UncountedOperatorError(Exception):
    """The model uses an op we have no rule for; its MACs would silently be missing."""


class _MacCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.totals: Counter = Counter()
        self.unknown: set[str] = set()
        self.norm: str | None = None  # the torch.nn.functional norm running now, set by _NormKind

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        first = out[0] if isinstance(out, tuple | list) else out
        if name in RULES:
            macs, macs_paper = RULES[name](args, first)
            self.totals.update(macs=macs, macs_paper=macs_paper)
        elif name in NORM_OPS and self.norm is not None:
            self.totals.update(macs_paper=first.numel() if self.norm in PAPER_COUNTED_NORMS else 0)
        elif name not in ZERO_COST_OPS:
            self.unknown.add(f"aten::{name}")
        return out


class _NormKind(TorchFunctionMode):
    """Tells the counter which norm function the ATen norm operators it sees come from."""

    def __init__(self, counter: _MacCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kind = NORM_FUNCTIONS.get(func)
        if kind is None:
            return func(*args, **(kwargs or {}))
        outer, self.counter.norm = self.counter.norm, kind
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.counter.norm = outer


def count_macs(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> MacCount:
    """MACs of one forward pass of ``model`` on ``example`` (batch included), in both conventions.

    A model and example on the ``meta`` device are counted without computing anything.
    """
    inputs = example if isinstance(example, tuple) else (example,)
    counter = _MacCounter()
    with torch.no_grad(), _NormKind(counter), counter:
        model(*inputs)
    if counter.unknown:
        names = ", ".join(sorted(counter.unknown))
        raise UncountedOperatorError(f"no MAC rule for {names}; add one to gzoo/metrics/macs.py")
    return MacCount(counter.totals["macs"], counter.totals["macs_paper"])


def count_params(model: nn.Module) -> int:
    """Every parameter of the deployed model (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
