"""zoo.yaml: every zoo entry, validated on load; problems are reported with file, line and field."""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gzoo.errors import GzooError, closest, malformed_yaml
from gzoo.zoo.architectures import architecture_catalogue

DEFAULT_ZOO = Path(__file__).resolve().parent.parent / "zoo.yaml"
METHODS = ("original", "gan-compression", "fast-gan-compression", "omgd", "cat", "fritz", "bit-goes-down",
           "community")
REPORTED_METRICS = ("fid", "kid", "miou", "top1", "params", "macs_paper", "size_bytes", "fps")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9.-]*$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reported:
    """A published number: never measured here."""

    metric: str
    value: float
    source: str
    protocol: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class ZooEntry:
    id: str
    method: str
    task: str
    arch: str
    arch_args: dict[str, Any]
    input: tuple[int, int, int]  # channels, height, width, as the paper measured
    teacher: str | None = None
    weights: dict[str, Any] | None = None
    license: str | None = None
    paper: str | None = None
    reported: tuple[Reported, ...] = ()
    recipe: str | None = None
    measurable: bool = True  # False: listed for its published numbers; its exact architecture is not known yet
    line: int = 0

    def reported_value(self, metric: str) -> Reported | None:
        return next((r for r in self.reported if r.metric == metric), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "method": self.method, "task": self.task, "teacher": self.teacher, "arch": self.arch,
            "arch_args": self.arch_args,
            "input": dict(zip(("channels", "height", "width"), self.input, strict=True)),
            "weights": self.weights, "license": self.license, "paper": self.paper,
            "reported": [r.as_dict() for r in self.reported],
            "recipe": self.recipe, "measurable": self.measurable,
        }


@dataclass
class Zoo:
    path: Path
    entries: dict[str, ZooEntry] = field(default_factory=dict)

    def get(self, model_id: str) -> ZooEntry:
        if model_id not in self.entries:
            raise GzooError(f"unknown model id '{model_id}'{closest(model_id, list(self.entries))}; "
                            "`gzoo list` shows every id")
        return self.entries[model_id]

    def select(self, method: str | None = None, task: str | None = None) -> list[ZooEntry]:
        """Entries of a method and/or task, in file order; an unknown method or task is an error."""
        for name, value, known in (("method", method, {e.method for e in self.entries.values()}),
                                   ("task", task, {e.task for e in self.entries.values()})):
            if value is not None and value not in known:
                raise GzooError(f"no zoo entry has {name} '{value}'{closest(value, sorted(known))}; "
                                f"known: {', '.join(sorted(known))}")
        return [e for e in self.entries.values()
                if (method is None or e.method == method) and (task is None or e.task == task)]


def zoo_path() -> Path:
    """The zoo file in use: GZOO_ZOO if set, else the zoo.yaml shipped with gzoo."""
    return Path(os.environ.get("GZOO_ZOO") or DEFAULT_ZOO)


def load_zoo(path: Path | None = None) -> Zoo:
    """Read and validate a zoo file."""
    path = Path(path) if path is not None else zoo_path()
    try:
        text = path.read_text()
    except OSError as err:
        raise GzooError(f"cannot read zoo file {path}: {err.strerror}; set GZOO_ZOO to a readable zoo.yaml") from None
    try:
        loader = _LineLoader(text)  # a SafeLoader that records line numbers
        try:
            document = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise malformed_yaml(path, err) from None
    return _Validator(path).zoo(document)


class _LineDict(dict):
    """A mapping that remembers the line of itself and of each key."""

    line = 0
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    mapping = _LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# PyYAML follows YAML 1.1, where 2.55e9 (no dot before the exponent, no sign after it) is a string;
# read it as the number everyone means.
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


class _Validator:
    """Checks a parsed zoo document field by field; the first problem raises a GzooError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.architectures = architecture_catalogue()

    def fail(self, mapping: Any, key: str | None, where: str, problem: str) -> None:
        line = getattr(mapping, "key_lines", {}).get(key) or getattr(mapping, "line", 0)
        location = f"{self.path}:{line}" if line else str(self.path)
        raise GzooError(f"{location}: {where}: {problem}")

    def mapping(self, value: Any, parent: Any, key: str | None, where: str, required: tuple[str, ...],
                optional: tuple[str, ...]) -> _LineDict:
        if not isinstance(value, dict):
            self.fail(parent, key, where, f"must be a mapping, not {type(value).__name__}")
        for name in value:
            if name not in required + optional:
                self.fail(value, name, f"{where}.{name}",
                          f"unknown field{closest(str(name), list(required + optional), n=1)}; "
                          f"allowed: {', '.join(required + optional)}")
        for name in required:
            if name not in value:
                self.fail(value, None, where, f"missing required field '{name}'")
        return value

    def typed(self, mapping: dict, key: str, where: str, kind: type | tuple[type, ...],
              nullable: bool = False) -> Any:
        value = mapping.get(key)
        if value is None and nullable:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(mapping, key, f"{where}.{key}",
                      f"must be {names}{' or null' if nullable else ''}, not {value!r}")
        return value

    def zoo(self, document: Any) -> Zoo:
        top = self.mapping(document, None, None, "top level", ("schema", "models"), ())
        if top["schema"] != 1:
            self.fail(top, "schema", "schema", f"unsupported schema version {top['schema']!r}; this gzoo reads 1")
        models = top["models"]
        if not isinstance(models, list) or not models:
            self.fail(top, "models", "models", "must be a non-empty list of entries")
        zoo = Zoo(self.path)
        for index, raw in enumerate(models):
            entry = self.entry(raw, top, f"models[{index}]")
            if entry.id in zoo.entries:
                self.fail(raw, "id", f"models[{index}].id",
                          f"duplicate id '{entry.id}' (first at line {zoo.entries[entry.id].line})")
            zoo.entries[entry.id] = entry
        for index, (entry, raw) in enumerate(zip(zoo.entries.values(), models, strict=True)):
            if entry.teacher is not None and entry.teacher not in zoo.entries:
                self.fail(raw, "teacher", f"models[{index}] ({entry.id}).teacher",
                          f"'{entry.teacher}' is not an id in this zoo{closest(entry.teacher, list(zoo.entries))}")
        return zoo

    def entry(self, raw: Any, parent: Any, where: str) -> ZooEntry:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            where = f"{where} ({raw['id']})"
        raw = self.mapping(raw, parent, None, where, ("id", "method", "task", "arch", "input"),
                           ("teacher", "arch_args", "weights", "license", "paper", "reported", "recipe",
                            "measurable"))
        model_id = self.typed(raw, "id", where, str)
        if not ID_PATTERN.match(model_id):
            self.fail(raw, "id", f"{where}.id", "must look like <method>/<task>[-<variant>] in lower case")
        method = self.typed(raw, "method", where, str)
        if method not in METHODS:
            self.fail(raw, "method", f"{where}.method", f"unknown method '{method}'{closest(method, list(METHODS))}")
        if model_id.split("/")[0] != method:
            self.fail(raw, "id", f"{where}.id", f"must start with its method '{method}/'")
        arch = self.typed(raw, "arch", where, str)
        if arch not in self.architectures:
            self.fail(raw, "arch", f"{where}.arch", f"unknown architecture '{arch}'"
                      f"{closest(arch, list(self.architectures))}")
        arch_args = self.typed(raw, "arch_args", where, dict, nullable=True) or {}
        accepted = self.architectures[arch]
        for name in arch_args:
            if name not in accepted:
                self.fail(arch_args, name, f"{where}.arch_args.{name}",
                          f"not an argument of {arch}{closest(str(name), list(accepted))}; "
                          f"accepted: {', '.join(accepted)}")
        shape = self.mapping(raw["input"], raw, "input", f"{where}.input", ("channels", "height", "width"), ())
        for name in ("channels", "height", "width"):
            if self.typed(shape, name, f"{where}.input", int) <= 0:
                self.fail(shape, name, f"{where}.input.{name}", "must be positive")
        return ZooEntry(
            id=model_id, method=method, task=self.typed(raw, "task", where, str), arch=arch,
            arch_args=dict(arch_args), input=(shape["channels"], shape["height"], shape["width"]),
            teacher=self.typed(raw, "teacher", where, str, nullable=True),
            weights=self.weights(raw, where),
            license=self.typed(raw, "license", where, str, nullable=True),
            paper=self.typed(raw, "paper", where, str, nullable=True),
            reported=self.reported(raw, where),
            recipe=self.typed(raw, "recipe", where, str, nullable=True),
            measurable=self.typed(raw, "measurable", where, bool, nullable=True) is not False,
            line=raw.line,
        )

    def weights(self, raw: dict, where: str) -> dict[str, Any] | None:
        weights = raw.get("weights")
        if weights is None:
            return None
        where = f"{where}.weights"
        weights = self.mapping(weights, raw, "weights", where, ("format",), ("hub", "url", "package"))
        self.typed(weights, "format", where, str)
        sources = [s for s in ("hub", "url", "package") if s in weights]
        if len(sources) != 1:
            self.fail(weights, None, where, "needs exactly one source: hub, url or package")
        source = sources[0]
        fields = {"hub": (("repo_id", "filename", "revision"), ("sha256",)),
                  "url": (("url",), ("sha256",)),
                  "package": (("name", "path"), ("sha256",))}[source]
        spec = self.mapping(weights[source], weights, source, f"{where}.{source}", *fields)
        for name in fields[0]:
            self.typed(spec, name, f"{where}.{source}", str)
        sha = self.typed(spec, "sha256", f"{where}.{source}", str, nullable=True)
        if sha is not None and not SHA256_PATTERN.match(sha):
            self.fail(spec, "sha256", f"{where}.{source}.sha256", "must be 64 lower-case hex digits or null")
        return {"format": weights["format"], source: dict(spec)}

    def reported(self, raw: dict, where: str) -> tuple[Reported, ...]:
        items = self.typed(raw, "reported", where, list, nullable=True) or []
        reported = []
        for index, item in enumerate(items):
            at = f"{where}.reported[{index}]"
            item = self.mapping(item, raw, "reported", at, ("metric", "value", "source"), ("protocol",))
            metric = self.typed(item, "metric", at, str)
            if metric not in REPORTED_METRICS:
                self.fail(item, "metric", f"{at}.metric",
                          f"unknown metric '{metric}'{closest(metric, list(REPORTED_METRICS))}; "
                          f"known: {', '.join(REPORTED_METRICS)}")
            reported.append(Reported(metric, float(self.typed(item, "value", at, (int, float))),
                                     self.typed(item, "source", at, str),
                                     self.typed(item, "protocol", at, str, nullable=True)))
        return tuple(reported)
