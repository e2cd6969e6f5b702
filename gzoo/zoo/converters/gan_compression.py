"""``gan-compression`` and ``omgd``: generator checkpoints (``latest_net_G.pth``) as those codes save them.

Our ResNet, mobile, sub-mobile, U-Net and SPADE (GauGAN) generators use the originals' parameter names,
so these checkpoints load key for key; what a converter must find is the architecture and its widths,
which the tensor shapes tell (a sub-mobile config is read off the layer widths, a GauGAN's dataset off
its label channels).
"""

from pathlib import Path
from typing import Any

import torch

from gzoo.errors import GzooError
from gzoo.models.spade import BLOCKS, SPADE_DATASETS
from gzoo.zoo.converters.base import Converted, match_architecture, read_checkpoint, register_converter

Candidate = tuple[str, dict[str, Any]]


def resnet_norm(state: dict[str, torch.Tensor]) -> str:
    """The generator's norm, read off the first norm layer's tensors."""
    if "model.2.running_mean" in state:
        return "batch"
    return "instance_affine" if "model.2.weight" in state else "instance"


def sub_mobile_config(state: dict[str, torch.Tensor]) -> str | None:
    """The 8-number config of a (sub-)mobile ResNet-9 generator from its layer widths; None if not one."""
    def out(key: str, axis: int = 0) -> int:
        return state[key].shape[axis]

    try:
        inner = [out(f"model.{i}.conv_block.1.conv.2.weight") // 4 for i in (10, 13, 16)]
        widths = [out("model.1.weight"), out("model.4.weight") // 2, out("model.7.weight") // 4, *inner,
                  out("model.19.weight", 1) // 2, out("model.22.weight", 1)]
    except (KeyError, IndexError):
        return None
    return "_".join(map(str, widths))


# A sub-mobile SPADE config number is a block's conv_0 width divided by these (fc's width by 16).
SPADE_CONFIG_SCALES = (16, 16, 16, 8, 4, 2, 1)


def spade_sub_mobile_config(state: dict[str, torch.Tensor]) -> str:
    """The 8-number config of a (sub-)mobile SPADE generator from its layer widths."""
    widths = [state["fc.weight"].shape[0] // 16]
    for block, scale in zip(BLOCKS, SPADE_CONFIG_SCALES, strict=True):
        widths.append(state[f"{block}.conv_0.weight"].shape[0] // scale)
    return "_".join(map(str, widths))


def spade_candidates(state: dict[str, torch.Tensor], config: str | None = None) -> list[Candidate]:
    """GauGAN generators as GAN Compression saves them (``fc``, ``head_0`` ... ``up_3``, ``conv_img``).

    The dataset follows from fc's label channels, the full width ngf from the batch norm statistics (which
    keep the full width in compressed generators too), full vs mobile from the SPADE gamma convs.
    """
    label_nc = state["fc.weight"].shape[1]
    datasets = [name for name, d in SPADE_DATASETS.items() if d.label_nc == label_nc]
    if not datasets:
        known = ", ".join(f"{name} ({d.label_nc})" for name, d in SPADE_DATASETS.items())
        raise GzooError(f"a GauGAN checkpoint whose fc takes {label_nc} label channels, but gzoo knows GauGANs for "
                        f"{known} only; pass --arch and --arch-args for another dataset's generator")
    common = {"dataset": datasets[0], "ngf": state["head_0.norm_0.param_free_norm.running_mean"].shape[0] // 16}
    if "head_0.norm_0.mlp_gamma.conv.0.weight" not in state:  # dense gamma/beta convs: the original GauGAN
        # A training checkpoint still holds spectral norm's weight_orig; released ones have it folded in.
        spectral = {"spectral_norm": True} if "head_0.conv_0.weight_orig" in state else {}
        return [("spade_generator", {**common, **spectral})]
    return [("mobile_spade_generator", common),
            ("sub_mobile_spade_generator", {**common, "config": config or spade_sub_mobile_config(state)})]


def candidates(state: dict[str, torch.Tensor], config: str | None = None) -> list[Candidate]:
    """Architectures this checkpoint could be, from its key layout."""
    if "fc.weight" in state and "head_0.norm_0.param_free_norm.running_mean" in state:
        return spade_candidates(state, config)
    found: list[Candidate] = []
    if "model.model.0.weight" in state:  # pix2pix U-Net (OMGD students and teachers)
        ngf = state["model.model.0.weight"].shape[0]
        found += [("unet_generator", {"ngf": ngf}), ("omgd_deep_unet_generator", {"ngf": ngf})]
    if "model.1.weight" in state:  # the ResNet skeleton
        ngf, norm = state["model.1.weight"].shape[0], resnet_norm(state)
        if "model.10.conv_block.1.conv.0.weight" in state:
            found.append(("mobile_resnet_generator", {"ngf": ngf, "norm": norm}))
            if config := config or sub_mobile_config(state):
                found.append(("sub_mobile_resnet_generator", {"config": config, "norm": norm}))
        found += [("resnet_generator", {"ngf": ngf, "norm": norm}),
                  ("omgd_deep_mobile_resnet_generator", {"ngf": ngf, "norm": norm})]
    if not found:
        raise GzooError("no generator layout recognised (expected keys like model.1.weight, model.model.0.weight "
                        "or GauGAN's fc.weight and head_0.*); is --from the right format?")
    return found


def convert_generator(source: Path, arch: str | None, arch_args: dict[str, Any]) -> Converted:
    state = read_checkpoint(source)
    if arch is not None:
        return Converted(arch, arch_args, state)
    arch, found_args = match_architecture(state, candidates(state, arch_args.get("config")), source)
    return Converted(arch, {**found_args, **arch_args}, state)


register_converter("gan-compression")(convert_generator)
register_converter("omgd")(convert_generator)
