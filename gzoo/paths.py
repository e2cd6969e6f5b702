"""Where gzoo keeps its files: GZOO_HOME, else the user's cache directory."""

import os
import shutil
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


def publish_directory(staging: Path, directory: Path) -> Path:
    """Move a complete ``staging`` directory (a sibling of ``directory``) into place, replacing what was there.

    The result gets the permissions of any file the user creates (``tempfile.mkdtemp`` makes private ones); an
    existing ``directory`` is replaced only once the new one is in place beside it, so no reader ever sees half.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in (staging, *staging.iterdir()):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    if directory.exists():
        retired = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(directory, retired)
        os.replace(staging, directory)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, directory)
    return directory
