"""Where gzoo keeps its files: GZOO_HOME, else the user's cache directory."""

import os
from pathlib import Path


def gzoo_home() -> Path:
    """The gzoo cache and data directory (created on first use)."""
    home = os.environ.get("GZOO_HOME")
    if home:
        path = Path(home)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "gzoo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
