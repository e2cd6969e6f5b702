"""Where gzoo keeps its files: GZOO_HOME, else the user's cache directory."""

import os
import shutil
from pathlib import Path

from gzoo.errors import GzooError


def gzoo_home() -> Path:
    """The gzoo cache and data directory (created on first use).

    One that cannot be a directory (a file is in the way, no permission) is bad input: exit 2, naming the path.
    """
    home = os.environ.get("GZOO_HOME")
    if home:
        path, origin = Path(home), "GZOO_HOME"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path, origin = Path(base) / "gzoo", "the default gzoo home"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker else err.strerror
        raise GzooError(f"{origin} {path} cannot be used: {why}; set GZOO_HOME to a writable directory") from None
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename; a failed write leaves no file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
