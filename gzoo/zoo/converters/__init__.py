"""Converters from the original checkpoint formats into gzoo model directories.

A converter is a function ``(source, arch, arch_args) -> Converted`` registered under its format name
(`gzoo convert SOURCE --from FORMAT`). One format per file; ``base`` holds what they share.
"""

from gzoo.errors import GzooError, closest
from gzoo.zoo.converters.base import CONVERTERS, Converted, Converter, check_source

__all__ = ["Converted", "Converter", "check_source", "formats", "get_converter"]


def formats() -> list[str]:
    _import_all()
    return sorted(CONVERTERS)


def get_converter(name: str) -> Converter:
    _import_all()
    if name not in CONVERTERS:
        raise GzooError(f"unknown checkpoint format '{name}'{closest(name, list(CONVERTERS))}; "
                        f"known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[name]


def _import_all() -> None:
    # Each format registers itself on import.
    from gzoo.zoo.converters import cat, gan_compression, kill_the_bits, onnx_style, state_dict, vintagify  # noqa: F401
