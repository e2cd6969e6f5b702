"""How numbers are written for people."""

import re


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
