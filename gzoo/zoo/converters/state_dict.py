"""``state-dict``: a plain state dict (.pth) or safetensors file for any registered architecture."""

from pathlib import Path
from typing import Any

from gzoo.errors import GzooError
from gzoo.zoo.converters.base import Converted, read_checkpoint, register_converter


@register_converter("state-dict")
def convert_state_dict(source: Path, arch: str | None, arch_args: dict[str, Any]) -> Converted:
    if arch is None:
        raise GzooError("--from state-dict needs --arch NAME (see `gzoo list --archs`) and its --arch-args")
    return Converted(arch, arch_args, read_checkpoint(source))
