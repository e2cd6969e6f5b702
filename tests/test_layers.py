"""The layers of DESIGN.md import downwards only: checked on the source, without importing anything."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gzoo"
# What each layer must never import (gzoo.<name> and anything below it).
FORBIDDEN = {
    "deploy": ("gzoo.api", "gzoo.cli", "gzoo.compress", "gzoo.zoo"),
    "metrics": ("gzoo.api", "gzoo.cli", "gzoo.compress", "gzoo.zoo", "gzoo.deploy"),
    "models": ("gzoo.api", "gzoo.cli", "gzoo.compress", "gzoo.zoo", "gzoo.deploy", "gzoo.metrics"),
    "data": ("gzoo.api", "gzoo.cli", "gzoo.compress", "gzoo.zoo", "gzoo.deploy", "gzoo.metrics"),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(layer):
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"gzoo/{layer} has no modules"
    offending = [f"{path.relative_to(PACKAGE)} imports {name}" for path in files for name in imported_modules(path)
                 if any(name == above or name.startswith(above + ".") for above in FORBIDDEN[layer])]
    assert offending == []
