"""The registered architectures and their arguments, known without importing torch when possible.

Validating zoo.yaml needs every architecture's argument names, but importing the model code means
importing torch (seconds). The catalogue is therefore cached in ``$GZOO_HOME/architectures.json``
together with a digest of the model sources, and rebuilt whenever that code changes.
"""

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from gzoo.paths import atomic_write_text, gzoo_home

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# The code that measures the leaderboard's figures (MACs, params, latency) besides the models themselves.
MEASURING_SOURCES = tuple(MODELS_DIR.parent / "metrics" / name for name in ("macs.py", "latency.py"))


def _sources_digest(sources: list[Path]) -> str:
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


@cache
def models_digest() -> str:
    """sha256 over the model sources: changes whenever any architecture's code does."""
    return _sources_digest(sorted(MODELS_DIR.glob("*.py")))


@cache
def figures_digest() -> str:
    """sha256 over the model sources and the code that measures them: cached figures (``figures.json``) of an
    older MAC counter or latency protocol are never served."""
    return _sources_digest([*sorted(MODELS_DIR.glob("*.py")), *MEASURING_SOURCES])


def architecture_catalogue() -> dict[str, dict[str, Any]]:
    """``{architecture: {argument: default}}`` for every registered architecture."""
    path = gzoo_home() / "architectures.json"
    try:
        cached = json.loads(path.read_text())
        if cached["digest"] == models_digest():
            return cached["architectures"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no catalogue yet, or a stale or unreadable one: rebuild it
    from gzoo.models import architecture_table

    catalogue = architecture_table()
    try:
        atomic_write_text(path, json.dumps({"digest": models_digest(), "architectures": catalogue}, default=repr))
    except OSError:
        pass  # a read-only cache only costs speed
    return catalogue
