"""Compression methods over one pipeline: each method one file, registered by name (see ``method``)."""

import importlib

from gzoo.compress.method import METHODS, Method
from gzoo.errors import GzooError, closest

# The shipped methods, each registering itself on import.
METHOD_MODULES = ("gan_compression", "fritz", "omgd", "cat", "bit_goes_down")

__all__ = ["Method", "get_method", "method_names"]


def method_names() -> list[str]:
    _import_methods()
    return sorted(METHODS)


def get_method(name: str) -> Method:
    """The registered method ``name``; an unknown one is one line naming the known ones."""
    _import_methods()
    if name not in METHODS:
        raise GzooError(f"recipe: unknown method {name!r}{closest(str(name), list(METHODS))}; known methods: "
                        f"{', '.join(sorted(METHODS))}")
    return METHODS[name]


def _import_methods() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(f"gzoo.compress.{module}")
