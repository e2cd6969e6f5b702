"""Building the model a model directory describes (``gzoo.data.modeldir`` reads and writes its files)."""

from pathlib import Path

import torch
from torch import nn

from gzoo.data.modeldir import read_config, read_weights, weights_path
from gzoo.errors import GzooError
from gzoo.models.registry import create_model


def load_model_dir(directory: Path) -> nn.Module:
    """Build the directory's architecture and load its weights; the model is returned in eval mode."""
    directory = Path(directory)
    config = read_config(directory)
    model = create_model(config["arch"], **config["arch_args"])
    load_state_checked(model, read_weights(directory, config), source=str(weights_path(directory, config)))
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
