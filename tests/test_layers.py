"""gzoo's imports point down its layers (README, "Layers") and never run in a circle; read from the source (ast).

Function-level imports count too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gzoo"

# Top to bottom; a module may import its own layer's modules and any layer below it, never one above.
LAYERS = (
    ("gzoo", "gzoo.__main__", "gzoo.cli"),  # the command line, and the package's own shortcut gzoo.load
    ("gzoo.api",),
    ("gzoo.report",),
    ("gzoo.zoo",),
    ("gzoo.compress", "gzoo.deploy"),
    ("gzoo.evaluation", "gzoo.protocols"),
    ("gzoo.metrics",),
    ("gzoo.results",),
    ("gzoo.models",),
    ("gzoo.data",),
    ("gzoo.errors", "gzoo.paths", "gzoo.machine", "gzoo.version"),
)
# What the command line may import besides itself: the API, and the report module for rendering.
CLI_MAY_IMPORT = ("gzoo.api", "gzoo.report", "gzoo.errors", "gzoo.version")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    return imports_in(MODULES[name].read_text())


def imports_in(source: str) -> set[str]:
    """The gzoo modules a source imports: ``from gzoo import X`` is gzoo.X where X is a module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "gzoo"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "gzoo":
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return found


def layer_of(name: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in members if m != "gzoo") or name == "gzoo":
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS and the README's picture")


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_import_runs_up_the_layers():
    upward = [f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
              for name in MODULES for target in sorted(imports_of(name)) if layer_of(target) < layer_of(name)]
    assert upward == []


def test_the_command_line_calls_only_the_api():
    outside = [f"{name} imports {target}" for name in MODULES if name.startswith("gzoo.cli")
               for target in sorted(imports_of(name))
               if not target.startswith("gzoo.cli") and not target.startswith(CLI_MAY_IMPORT)]
    assert outside == []


def test_a_compression_method_never_imports_another():
    from gzoo.compress import METHOD_MODULES

    methods = {f"gzoo.compress.{m}" for m in METHOD_MODULES}
    crossing = [f"{m} imports {t}" for m in methods for t in sorted(imports_of(m)) if t in methods - {m}]
    assert crossing == []


def test_no_import_circle():
    graph = {name: imports_of(name) & set(MODULES) for name in MODULES}
    visiting, done, circles = [], set(), []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            circles.append(" -> ".join([*visiting[visiting.index(name):], name]))
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert circles == []


@pytest.mark.parametrize("source, expected", [
    ("from gzoo.api import load", {"gzoo.api"}),
    ("from gzoo import results, __version__", {"gzoo.results", "gzoo"}),
    ("def f():\n    import gzoo.zoo.hub", {"gzoo.zoo.hub"}),
    ("from gzoo.models import create_model, resnet", {"gzoo.models", "gzoo.models.resnet"}),
])
def test_the_walker_sees_every_kind_of_import(source, expected):
    # The checks above are only as good as this reading of the source.
    assert imports_in(source) == expected
