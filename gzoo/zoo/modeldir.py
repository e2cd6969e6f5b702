"""A gzoo model directory: ``model.safetensors`` (weights), ``config.json`` (what to build), ``README.md``.

Every checkpoint format is converted into this once; loading it never unpickles anything.
"""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo import __version__
from gzoo.errors import GzooError
from gzoo.paths import publish_directory

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
CLASSIFIER_ARCHS = ("resnet18", "resnet50")  # the zoo's ImageNet classifiers (Bit-Goes-Down); the rest generate


def save_model_dir(directory: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                   card: str | None = None) -> Path:
    """Write a model directory atomically: built in a temporary sibling, then renamed into place.

    ``config`` needs at least ``arch`` and ``arch_args``; an existing directory is replaced only once
    the new one is complete, so an interrupted save never leaves half a model behind.
    """
    from safetensors.torch import save_file

    from gzoo.zoo.card import model_card  # imports this module

    for key in ("arch", "arch_args"):
        if key not in config:
            raise ValueError(f"model config needs '{key}'")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        save_file(tensors, str(staging / WEIGHTS))
        (staging / CONFIG).write_text(json.dumps({"gzoo_version": __version__, **config}, indent=2) + "\n")
        (staging / CARD).write_text(card or model_card(config, reported=config.get("reported") or ()))
        publish_directory(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


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


def load_model_dir(directory: Path) -> nn.Module:
    """Build the directory's architecture and load its weights; the model is returned in eval mode."""
    from safetensors.torch import load_file

    from gzoo.models import create_model

    directory = Path(directory)
    config = read_config(directory)
    model = create_model(config["arch"], **config["arch_args"])
    try:
        state = load_file(str(directory / WEIGHTS))
    except (OSError, RuntimeError) as err:
        raise GzooError(f"cannot read {directory / WEIGHTS}: {err}; convert the model again") from None
    load_state_checked(model, state, source=str(directory / WEIGHTS))
    return model.eval()


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that names the first missing, unexpected or misshapen tensor in one line."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise GzooError(f"{source}: missing tensor '{key}' (shape {tuple(tensor.shape)}) for "
                            f"{type(model).__name__}; check the architecture and its arguments")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise GzooError(f"{source}: tensor '{key}' has shape {tuple(state[key].shape)}, the architecture "
                            f"expects {tuple(tensor.shape)}; check the architecture arguments (widths, config)")
    for key in state:
        if key not in expected:
            raise GzooError(f"{source}: unexpected tensor '{key}' for {type(model).__name__}; "
                            "check the architecture or the checkpoint format")
    model.load_state_dict(state, strict=True)
