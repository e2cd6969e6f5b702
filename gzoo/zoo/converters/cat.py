"""``cat``: CAT's inception generators (``--netG inception_9blocks``) and inception SPADE generators (``--netG
inception_spade``, GauGAN), teachers and pruned students.

CAT saves a generator as a plain state dict (``latest_net_G.pth``) with the parameter names our
``cat_inception_generator`` and ``cat_inception_spade_generator`` use, so the tensors load as they are; what
must be found is the architecture's arguments. Every width is a tensor shape: the stem, downsampling and
upsampling convs (the SPADE's ``fc``), and each block's branches, where a branch CAT pruned to nothing has no
tensors and the remaining ones are numbered in kernel order, so a branch's kernel size is read off its kxk conv.
The activation is no tensor: an inception SPADE at a teacher's widths is taken for a teacher (train.py trains
it with leaky_relu), any other for a distilled student (relu); ``--arch-arg activation=...`` says otherwise.
"""

import re
from itertools import count
from pathlib import Path
from typing import Any

import torch

from gzoo.errors import GzooError
from gzoo.models.cat import KERNEL_SIZES, BlockWidths, CatSpadeWidths, CatWidths, SpadeBlockWidths
from gzoo.models.spade import BLOCKS as SPADE_BLOCKS
from gzoo.models.spade import SPADE_DATASETS
from gzoo.zoo.converters.base import Converted, read_checkpoint, register_converter

ARCH = "cat_inception_generator"
SPADE_ARCH = "cat_inception_spade_generator"
# Per architecture, where a branch's convs are: the dense one's kxk, the depthwise one's 1x1 and its kxk.
BRANCH_KEYS = {ARCH: (".1.0.weight", ".0.0.weight", ".2.0.weight"),
               SPADE_ARCH: (".0.conv.weight", ".0.conv.weight", ".1.conv.weight")}
LABEL_CHANNELS = {d.label_nc: name for name, d in SPADE_DATASETS.items()}  # fc's input: the dataset
# Convs of the down_sampling and up_sampling stacks; a checkpoint without them is no CAT generator.
LAYOUT_KEYS = ("down_sampling.1.weight", "down_sampling.4.weight", "down_sampling.7.weight",
               "up_sampling.0.weight", "up_sampling.3.weight", "up_sampling.7.weight")
BLOCK_KEY = re.compile(r"features\.(\d+)\.")


def cat_norm(state: dict[str, torch.Tensor]) -> str:
    """CAT's pix2pix teachers use batch norm (with running statistics), its CycleGAN ones affine instance norm."""
    if "down_sampling.2.running_mean" in state:
        return "batch"
    return "instance_affine" if "down_sampling.2.weight" in state else "instance"


def branch_widths(state: dict[str, torch.Tensor], block: str, kind: str, source: Path, arch: str = ARCH) -> \
        tuple[int, ...]:
    """The ``res`` or ``dw`` branch widths per kernel size (0: pruned away) of the block (or SPADE norm) whose
    keys start with ``block``, from the branches present."""
    widths = [0] * len(KERNEL_SIZES)
    previous = -1
    # The dense branch opens with its kxk conv; the depthwise one with a 1x1 conv, then the kxk one.
    res, dw_first, dw_spatial = BRANCH_KEYS[arch]
    for i in count():
        prefix = f"{block}.{kind}_ops.{i}"
        first, spatial = ((prefix + res,) * 2 if kind == "res" else (prefix + dw_first, prefix + dw_spatial))
        if first not in state or spatial not in state:  # leftovers of a damaged branch: the loader names them
            break
        kernel = state[spatial].shape[-1]
        slot = KERNEL_SIZES.index(kernel) if kernel in KERNEL_SIZES else -1
        if slot <= previous:  # an unsupported kernel, or CAT run with --kernel_sizes in another order
            raise GzooError(f"{source}: branch {prefix} has a {kernel}x{kernel} kernel; {arch} takes branches with "
                            f"kernels {', '.join(map(str, KERNEL_SIZES))} in that order (CAT's --kernel_sizes 1 3 5)")
        widths[slot] = state[first].shape[0]
        previous = slot
    return tuple(widths)


def cat_widths(state: dict[str, torch.Tensor], source: Path) -> CatWidths:
    """Every width of the generator, read off its tensor shapes."""
    # A block leaves no tensor only when it is pruned to nothing under a norm without parameters; CAT
    # always builds nine, so only such trailing blocks could be missed (they are identities anyway).
    n_blocks = max((int(m.group(1)) for key in state if (m := BLOCK_KEY.match(key))), default=-1) + 1
    blocks = tuple(BlockWidths(branch_widths(state, f"features.{i}", "res", source),
                               branch_widths(state, f"features.{i}", "dw", source)) for i in range(n_blocks))
    down = (state["down_sampling.4.weight"].shape[0], state["down_sampling.7.weight"].shape[0])
    # ConvTranspose2d weights are (in, out, k, k).
    up = (state["up_sampling.0.weight"].shape[1], state["up_sampling.3.weight"].shape[1])
    return CatWidths(state["down_sampling.1.weight"].shape[0], down, blocks, up)


def inferred_args(state: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """``cat_inception_generator`` arguments that fit the checkpoint: a teacher by ngf, a student by widths."""
    missing = [key for key in LAYOUT_KEYS if key not in state or state[key].dim() != 4]
    if missing:
        raise GzooError(f"{source}: not a CAT inception generator (no 4-d tensor '{missing[0]}'; expected "
                        "down_sampling.*, features.*, up_sampling.* convs); is --from the right format?")
    widths = cat_widths(state, source)
    n_blocks = len(widths.blocks)
    teacher = widths == CatWidths.uniform(widths.stem, n_blocks)
    width_args: dict[str, Any] = {"ngf": widths.stem} if teacher else {"widths": widths.to_dict()}
    return {**width_args, "n_blocks": n_blocks, "norm": cat_norm(state),
            "input_nc": state["down_sampling.1.weight"].shape[1], "output_nc": state["up_sampling.7.weight"].shape[0]}


def spade_inferred_args(state: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """``cat_inception_spade_generator`` arguments that fit the checkpoint: the dataset from fc's input channels,
    a teacher by ngf, a student by widths (the activation as the module docstring says)."""
    fc = state["fc.weight"]
    if fc.dim() != 4 or fc.shape[1] not in LABEL_CHANNELS:
        raise GzooError(f"{source}: fc.weight takes {fc.shape[1] if fc.dim() == 4 else '?'} label channels; CAT's "
                        f"inception SPADE takes {' or '.join(f'{c} ({n})' for c, n in LABEL_CHANNELS.items())}")
    blocks = tuple(SpadeBlockWidths(*(BlockWidths(branch_widths(state, prefix, "res", source, SPADE_ARCH),
                                                  branch_widths(state, prefix, "dw", source, SPADE_ARCH))
                                      for prefix in (name, f"{name}.spade")))
                   for name in SPADE_BLOCKS)
    widths = CatSpadeWidths(fc.shape[0], blocks)
    dataset = LABEL_CHANNELS[fc.shape[1]]
    if widths == CatSpadeWidths.uniform(widths.fc // 16):
        return {"dataset": dataset, "ngf": widths.fc // 16, "activation": "leaky_relu"}
    return {"dataset": dataset, "widths": widths.to_dict(), "activation": "relu"}


@register_converter("cat")
def convert_cat(source: Path, arch: str | None, arch_args: dict[str, Any]) -> Converted:
    state = read_checkpoint(source)
    spade = "fc_norm.weight" in state and arch in (None, SPADE_ARCH)
    if arch not in (None, ARCH) and not spade:
        return Converted(arch, arch_args, state)
    found = spade_inferred_args(state, source) if spade else inferred_args(state, source)
    # The user's width spec replaces the one read off the shapes whole (widths carry their own block count),
    # so a wrong one fails on the first tensor that does not fit instead of being silently mixed with ours.
    if "ngf" in arch_args or "widths" in arch_args:
        found = {k: v for k, v in found.items() if k not in ("ngf", "widths")}
    if "widths" in arch_args and not spade:
        del found["n_blocks"]
    return Converted(SPADE_ARCH if spade else ARCH, {**found, **arch_args}, state)
