"""Packed weights: a model directory whose weights file stores a compressed form that gzoo decodes on load.

A method that compresses the storage of its student (8-bit weights, product quantization) hands the pipeline a
``Packed``; ``gzoo.data.modeldir`` writes it as ``model.packed.safetensors`` and names its format in config.json.
Each format is a module of this package, ``gzoo.data.packing.<format>``, with
``decode(tensors, metadata) -> state dict``: decoding lives here, below the models, so any layer can load a packed
directory without importing the method that packed it.
"""

import importlib
import pkgutil
from dataclasses import dataclass, field

import torch

from gzoo.errors import GzooError


@dataclass(frozen=True)
class Packed:
    format: str  # the module of this package that decodes it
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)  # kept in the safetensors header
    accounted_bytes: int | None = None  # the size in a paper's accounting, where it differs from the file's


def formats() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def decode(format: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str],
           source: str) -> dict[str, torch.Tensor]:
    """The dense state dict a packed file holds."""
    if format not in formats():
        raise GzooError(f"{source}: unknown packed format '{format}' (this gzoo reads: {', '.join(formats())}); "
                        "upgrade gzoo")
    return importlib.import_module(f"{__name__}.{format}").decode(tensors, metadata)
