"""What every converter shares: the ``Converted`` result, the registry they add themselves to, safe checkpoint
reading and matching a state dict to an architecture. Converters import this module; the package imports them.
"""

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gzoo.errors import GzooError


@dataclass
class Converted:
    """What a converter produces: the architecture to build and its weights."""

    arch: str
    arch_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)  # format facts kept in config.json (e.g. packed size)


Converter = Callable[[Path, str | None, dict[str, Any]], Converted]
CONVERTERS: dict[str, Converter] = {}


def register_converter(name: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        CONVERTERS[name] = fn
        return fn

    return register


# The first bytes of what torch.save writes: a zip archive (PyTorch >= 1.6), or a pickle (protocol 2 and up).
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


def check_source(path: Path) -> None:
    """Refuse, with one line, a source that is no checkpoint of any format: missing, a folder, an image."""
    path = Path(path)
    if not path.exists():
        raise GzooError(f"checkpoint {path} does not exist; give the path of the original's checkpoint file")
    if path.is_dir():
        raise GzooError(f"{path} is a folder, not a checkpoint; give the checkpoint file inside it (e.g. "
                        "latest_net_G.pth)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            kind = image.format
    except (OSError, UnidentifiedImageError):
        return
    raise GzooError(f"{path} is a {kind} image, not a checkpoint; give the original's weights file (.pth, "
                    ".safetensors, .onnx); images go to `gzoo eval --data` or `gzoo fid`")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: safetensors, or a pickle read with ``weights_only=True`` only.

    A ``{"state_dict": ...}`` wrapper and DataParallel's ``module.`` prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise GzooError(f"checkpoint {path} does not exist; give the path of a .pth or .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise GzooError(f"cannot read {path} as safetensors: {err}") from None
    state = read_pickle(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GzooError(f"{path} holds no plain state dict of tensors; is --from the right format?")
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_pickle(path: Path) -> Any:
    """``torch.load(weights_only=True)``: plain containers and tensors only, never code."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as err:
        raise GzooError(f"cannot read checkpoint {path}: {err.strerror}") from None
    if not head.startswith(PICKLE_MAGIC):
        what = "it is empty" if not head else f"it starts with {head!r}, not as torch.save writes a file"
        raise GzooError(f"{path} is not a PyTorch checkpoint ({what}); give a .pth file saved by torch.save, or "
                        "check --from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0] if str(err) else "not a plain-data pickle"
        raise GzooError(f"refused to load {path}: it needs more than plain tensors and containers to unpickle "
                        f"({reason}); only weights_only pickles are read, so re-save it as a state dict") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise GzooError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None


def match_architecture(state: dict[str, torch.Tensor], candidates: list[tuple[str, dict[str, Any]]],
                       source: Path) -> tuple[str, dict[str, Any]]:
    """The first candidate architecture whose tensors have exactly the checkpoint's names and shapes."""
    from gzoo.models import create_model

    wanted = {k: tuple(v.shape) for k, v in state.items()}
    for arch, arch_args in candidates:
        expected = {k: tuple(v.shape) for k, v in create_model(arch, **arch_args).state_dict().items()}
        if expected == wanted:
            return arch, arch_args
    tried = ", ".join(f"{a}({', '.join(f'{k}={v!r}' for k, v in args.items())})" for a, args in candidates)
    raise GzooError(f"{source}: no architecture fits its tensors (tried {tried}); "
                    "pass --arch and --arch-args, or check --from")
