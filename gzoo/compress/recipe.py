"""Recipe files: a method, a teacher, data and the method's settings, validated before anything runs.

A recipe is YAML with the sections below (every key optional unless said; see recipes/ for complete ones)::

    method: gan-compression        # required: a registered method (gzoo.compress.method_names())
    task: horse2zebra               # required: the task the result is filed under
    teacher: original/horse2zebra   # required (or --teacher): zoo id or model directory
    source: "GAN Compression scripts/cycle_gan/horse2zebra/*.sh"   # where the settings come from
    data: {...}                     # DataSettings
    training: {...}                 # the engine's TrainingSettings, extended by the method's own keys
    evaluate: {...}                 # EvaluateSettings: the row stored for the exported student
    ...                             # the method's own sections (GAN Compression: student, stages)

Unknown keys and wrong types are refused with the key's dotted name (and, for a key of another method, that
method's name); ``--set section.key=value`` overrides any value (the value is read as YAML). Paths in a recipe
are relative to the working directory, as in the originals' scripts.
"""

import copy
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from gzoo.compress.engine import TrainingSettings
from gzoo.compress.method import METHODS, Method
from gzoo.compress.settings import LAYOUTS, DataSettings, EvaluateSettings, StageSettings
from gzoo.errors import GzooError, closest, malformed_yaml

HEAD = ("method", "task", "teacher", "source")  # plain values; every other top-level key is a section


@dataclass(frozen=True)
class Recipe:
    method: str
    task: str
    teacher: str | None = None
    source: str | None = None
    data: DataSettings = field(default_factory=DataSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    sections: dict[str, Any] = field(default_factory=dict)  # the method's own sections, by name
    path: str | None = None  # the file it was read from (not a recipe key)

    def __getattr__(self, name: str) -> Any:
        # A method's own sections read like the shared ones: recipe.stages, recipe.student.
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"this {self.__dict__.get('method')} recipe has no section {name!r}")

    def as_dict(self) -> dict[str, Any]:
        sections = {"data": self.data, "training": self.training, **self.sections, "evaluate": self.evaluate}
        return {**{key: getattr(self, key) for key in HEAD},
                **{name: None if section is None else asdict(section) for name, section in sections.items()}}


def load_recipe(path: str | Path, overrides: list[str] = (), teacher: str | None = None,
                data: str | None = None) -> Recipe:
    """Read, override and validate a recipe; every problem is one GzooError naming the key."""
    from gzoo.compress import get_method

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise GzooError(f"recipe {path} does not exist; see recipes/ for the shipped ones") from None
    except yaml.YAMLError as err:
        raise malformed_yaml(path, err, "recipe ") from None
    if not isinstance(document, dict):
        raise GzooError(f"recipe {path} must be a YAML mapping of sections (method, teacher, data, ...)")
    document = copy.deepcopy(document)
    for override in overrides:
        _apply_override(document, override)
    if teacher:
        document["teacher"] = teacher
    if data:
        document.setdefault("data", {})["root"] = data
    if "method" not in document:
        raise GzooError("recipe: 'method' is required (e.g. method: gan-compression)")
    method = get_method(document["method"])
    recipe = replace(_build_recipe(method, document), path=str(path))
    _check(recipe, method)
    method.check(recipe)
    return recipe


def schema(method: Method) -> dict[str, type]:
    """Every section a recipe of ``method`` may hold, in the order a resolved recipe writes them."""
    return {"data": DataSettings, "training": method.training, **method.sections, "evaluate": EvaluateSettings}


def _build_recipe(method: Method, document: dict) -> Recipe:
    sections = schema(method)
    known = [*HEAD, *sections]
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key not in known:
            raise GzooError(f"recipe: unknown section '{key}'{_owner([key], method) or closest(str(key), known)}; "
                            f"a {method.name} recipe holds: {', '.join(known)}")
        if key in HEAD:
            values[key] = _typed(str | None, value, key)
        else:
            values[key] = None if value is None else _build(sections[key], value, f"{key}.", method)
    for key in ("method", "task"):
        if not values.get(key):
            raise GzooError(f"recipe: '{key}' is required")
    own = {k: values[k] if k in values else _default(cls) for k, cls in method.sections.items()}
    return Recipe(**{k: v for k, v in values.items() if k in HEAD},
                  data=values.get("data") or DataSettings(), training=values.get("training") or method.training(),
                  evaluate=values.get("evaluate") or EvaluateSettings(), sections=own)


def _default(cls: type) -> Any:
    """A section left out: its defaults, or None where the section has required keys."""
    required = [f for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    return None if required else cls()


def _owner(path: list[str], method: Method) -> str:
    """' (a key of method X, not of this recipe's method)' when other registered methods have this key."""
    owners = sorted(other.name for other in METHODS.values()
                    if not (other.sections == method.sections and other.training is method.training)  # itself
                    and _has_key(schema(other), path))
    if not owners:
        return ""
    return f" (a key of method{'s' * (len(owners) > 1)} {', '.join(owners)}, not of {method.name})"


def _has_key(node: Any, path: list[str]) -> bool:
    for part in path:
        node = node.get(part) if isinstance(node, dict) else _fields(node).get(part)
        if node is None:
            return False
    return True


def _fields(cls: Any) -> dict[str, Any]:
    if not is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    result = {}
    for f in fields(cls):
        options = typing.get_args(hints[f.name]) if isinstance(hints[f.name], types.UnionType) else (hints[f.name],)
        result[f.name] = next((o for o in options if is_dataclass(o)), True)
    return result


def _apply_override(document: dict, override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise GzooError(f"--set {override!r}: write it as section.key=value, e.g. --set training.lr=1e-4")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    *parents, last = key.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise GzooError(f"--set {override!r}: {part} is not a section")
    node[last] = value


def _build(cls: type, values: Any, where: str, method: Method) -> Any:
    """The dataclass ``cls`` from a mapping, refusing unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise GzooError(f"recipe: {where or 'the recipe'} must be a mapping, not {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.name != "path"]
    arguments = {}
    for key, value in values.items():
        name = f"{where}{key}"
        if key not in known:
            hint = _owner([*where.rstrip(".").split("."), str(key)], method) or closest(str(key), known)
            raise GzooError(f"recipe: unknown key '{name}'{hint}; known keys here: {', '.join(known)}")
        arguments[key] = _typed(hints[key], value, name, method)
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
               and f.name not in arguments]
    if missing:
        raise GzooError(f"recipe: '{where}{missing[0]}' is required")
    return cls(**arguments)


def _typed(hint: Any, value: Any, name: str, method: Method | None = None) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if is_dataclass(option):
            return _build(option, value, f"{name}.", method)
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is float and isinstance(value, str) and _is_number(value):
            return float(value)  # PyYAML reads 3e9 and 1.0e9 (no sign in the exponent) as strings
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and isinstance(value, option):
            return value
        if typing.get_origin(option) is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    wanted = " or ".join(_type_name(o) for o in options)
    raise GzooError(f"recipe: '{name}' must be {wanted}, not {value!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _type_name(hint: Any) -> str:
    if is_dataclass(hint):
        return "a mapping"
    if typing.get_origin(hint) is list:
        return "a list of strings"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(hint, str(hint))


def one_of(value: Any, choices: tuple, name: str) -> None:
    """Refuse a value that is not one of ``choices``, naming the key."""
    if value not in choices:
        raise GzooError(f"recipe: '{name}' must be one of {', '.join(map(str, choices))}, not {value!r}")


def check_stage_length(name: str, stage: StageSettings) -> None:
    """A training stage runs by epochs or by steps, at least one."""
    by_epochs, by_steps = stage.epochs is not None, stage.steps is not None
    if by_epochs == by_steps:
        raise GzooError(f"recipe: 'stages.{name}' needs either epochs (+ epochs_decay) or steps (+ steps_decay)")
    length = [v for v in (stage.epochs, stage.epochs_decay, stage.steps, stage.steps_decay) if v is not None]
    if min(length) < 0 or sum(length) < 1:
        raise GzooError(f"recipe: 'stages.{name}' must train at least one step")


def _check(recipe: Recipe, method: Method) -> None:
    """What every recipe needs, whatever its method; the method's ``check`` follows."""
    if not recipe.teacher and method.needs_teacher(recipe):
        raise GzooError("recipe: no teacher; set 'teacher' to a zoo id or model directory, or pass --teacher")
    data = recipe.data
    if not data.root and not data.builtin:
        raise GzooError("recipe: no data; set 'data.root' to the dataset folder or pass --data DIR")
    if data.builtin:
        one_of(data.builtin, ("skimage-photos",), "data.builtin")
        if data.photo_scale < 2:  # the training grid and the held-out band are a crop wide each, at least
            raise GzooError(f"recipe: data.photo_scale {data.photo_scale} leaves no room for training crops beside "
                            "the held-out band; give at least 2")
    one_of(data.layout, LAYOUTS, "data.layout")
    one_of(data.direction, ("AtoB", "BtoA"), "data.direction")
    if data.crop_size > data.load_size:
        raise GzooError(f"recipe: data.crop_size {data.crop_size} is larger than data.load_size {data.load_size}")
    for name in ("batch_size", "checkpoint_every", "log_every"):
        if getattr(recipe.training, name) < 1:
            raise GzooError(f"recipe: 'training.{name}' must be at least 1")
    against_teacher = [m for m in ("psnr", "ssim") if m in recipe.evaluate.metrics]
    if not recipe.teacher and against_teacher:
        raise GzooError(f"recipe: evaluating {against_teacher[0]} compares the student with its teacher, and this "
                        "recipe has none; set evaluate.metrics without psnr and ssim (e.g. [latency])")
    # cityscapes data brings its own label maps (converted to train ids); other layouts name them
    labelled = recipe.evaluate.labels or data.layout == "cityscapes"
    if "miou" in recipe.evaluate.metrics and not (recipe.evaluate.segmenter and labelled):
        raise GzooError("recipe: evaluating miou needs 'evaluate.segmenter' and 'evaluate.labels'")
