"""How numbers are written for people."""


def human(value: float | None, digits: int = 2) -> str:
    """11378179 -> 11.38M; None -> '-'."""
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f}{unit}"
    return f"{value:g}"
