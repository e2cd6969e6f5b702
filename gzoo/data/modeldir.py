"""A gzoo model directory on disk: ``model.safetensors`` (weights), ``config.json`` (what to build), ``README.md``.

A packed directory (``gzoo.data.packing``: 8-bit weights, product quantization) has ``model.packed.safetensors``
instead, and its config.json names the format under ``packing``.

Every checkpoint format is converted into this once; reading one never unpickles anything. Building the
model from a directory is ``gzoo.models.load_model_dir``; the card's text comes from whoever writes the
directory (``gzoo.zoo.card`` builds the Hub's).
"""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from gzoo.data.packing import Packed, decode
from gzoo.errors import GzooError
from gzoo.paths import publish_directory
from gzoo.version import __version__

WEIGHTS = "model.safetensors"
PACKED_WEIGHTS = "model.packed.safetensors"
CONFIG = "config.json"
CARD = "README.md"
CHUNK = 1 << 20


def save_model_dir(directory: Path, weights: dict[str, torch.Tensor] | Packed, config: dict[str, Any],
                   card: str | None = None) -> Path:
    """Write a model directory atomically: built in a temporary sibling, then renamed into place.

    ``weights`` is a state dict, or a ``Packed`` form written as such. ``config`` needs at least ``arch`` and
    ``arch_args``; ``card`` is the README.md text (none without it). An existing directory is replaced only once
    the new one is complete, so an interrupted save never leaves half a model behind.
    """
    from safetensors.torch import save_file

    for key in ("arch", "arch_args"):
        if key not in config:
            raise ValueError(f"model config needs '{key}'")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        if isinstance(weights, Packed):
            config = {**config, "packing": weights.format}
            if weights.accounted_bytes is not None:
                config["packed"] = {"packed_bytes": weights.accounted_bytes}
            save_file(_contiguous(weights.tensors), str(staging / PACKED_WEIGHTS), metadata=weights.metadata)
        else:
            save_file(_contiguous(weights), str(staging / WEIGHTS))
        (staging / CONFIG).write_text(json.dumps({"gzoo_version": __version__, **config}, indent=2) + "\n")
        if card is not None:
            (staging / CARD).write_text(card)
        publish_directory(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def weights_path(directory: Path, config: dict[str, Any] | None = None) -> Path:
    """The directory's weights file: ``model.packed.safetensors`` for a packed one, else ``model.safetensors``."""
    config = read_config(directory) if config is None else config
    return Path(directory) / (PACKED_WEIGHTS if config.get("packing") else WEIGHTS)


def results_key(directory: Path, config: dict[str, Any]) -> str:
    """The model id a directory's measurements are stored under: its config's id, else its absolute path."""
    return config.get("id") or str(Path(directory).resolve())


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GzooError(f"{directory} is not a gzoo model directory (no {CONFIG}); "
                        "`gzoo convert` makes one from an original checkpoint") from None
    except ValueError as err:
        raise GzooError(f"{path} is not valid JSON ({err}); convert the model again") from None


def read_weights(directory: Path, config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The dense state dict of a directory's weights (a packed file decoded); ``config`` if already read."""
    from safetensors import SafetensorError, safe_open

    config = read_config(directory) if config is None else config
    path = weights_path(directory, config)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise GzooError(f"cannot read {path}: {err}; convert the model again") from None
    if config.get("packing"):
        return decode(config["packing"], tensors, metadata, str(path))
    return tensors


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
