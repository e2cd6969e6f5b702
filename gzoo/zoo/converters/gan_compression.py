"""``gan-compression`` and ``omgd``: generator checkpoints (``latest_net_G.pth``) as those codes save them.

Our ResNet, mobile, sub-mobile and U-Net generators use the originals' parameter names, so these
checkpoints load key for key; what a converter must find is the architecture and its widths, which
the tensor shapes tell (a sub-mobile config is read off the layer widths).
"""

from pathlib import Path
from typing import Any

import torch

from gzoo.errors import GzooError
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


def candidates(state: dict[str, torch.Tensor], config: str | None = None) -> list[Candidate]:
    """Architectures this checkpoint could be, from its key layout."""
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
        raise GzooError("no generator layout recognised (expected keys like model.1.weight or model.model.0.weight); "
                        "is --from the right format?")
    return found


def convert_generator(source: Path, arch: str | None, arch_args: dict[str, Any]) -> Converted:
    state = read_checkpoint(source)
    if arch is not None:
        return Converted(arch, arch_args, state)
    arch, found_args = match_architecture(state, candidates(state, arch_args.get("config")), source)
    return Converted(arch, {**found_args, **arch_args}, state)


register_converter("gan-compression")(convert_generator)
register_converter("omgd")(convert_generator)
