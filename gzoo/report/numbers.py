"""How numbers (and the values around them) are written for people."""

import re
from typing import Any


def human(value: float | None, digits: int = 2) -> str:
    """11378179 -> 11.38M; None -> '-'."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{unit}"
    return f"{value:g}"


def compact(value: float, digits: int = 3) -> str:
    """Like ``human`` without trailing zeros, as papers print counts: 867000 -> 867K, 1.5e9 -> 1.5G."""
    text = human(value, digits)
    return re.sub(r"\.?0+(?=[KMG]?$)", "", text) if "." in text else text


def readable(value: Any) -> str:
    """A value as a person reads it, never as Python writes it: None -> '-', True -> 'yes', 2550000000.0 ->
    '2.55G', 356867 -> '356,867', {'stem': 16, 'up': [32, 16]} -> 'stem 16; up 32, 16'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return human(value) if abs(value) >= 1e4 else f"{value:g}"
    if isinstance(value, dict):
        return "; ".join(f"{key} {readable(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(readable, value))
    return str(value)
