"""Recipe files: a method, a teacher, data and the settings of each stage, validated before anything runs.

A recipe is YAML with the sections below (every key optional unless said; see recipes/ for complete ones)::

    method: gan-compression        # required: gan-compression | fast-gan-compression
    task: horse2zebra               # required: the task the result is filed under
    teacher: original/horse2zebra   # required (or --teacher): zoo id or model directory
    source: "GAN Compression scripts/cycle_gan/horse2zebra/*.sh"   # where the settings come from
    data: {...}                     # DataSettings
    student: {...}                  # StudentSettings
    training: {...}                 # TrainingSettings, shared by the training stages
    stages: {distill: {...}, supernet: {...}, search: {...}, finetune: {...}}
    evaluate: {...}                 # EvaluateSettings: the row stored for the exported student

Unknown keys and wrong types are refused with the key's dotted name; ``--set section.key=value`` overrides
any value (the value is read as YAML). Paths in a recipe are relative to the working directory, as in the
originals' scripts.
"""

import copy
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from gzoo.errors import GzooError, closest, malformed_yaml

METHODS = ("gan-compression", "fast-gan-compression")
LAYOUTS = ("paired", "unpaired", "single")
GAN_MODES = ("hinge", "lsgan", "vanilla")
RECON_LOSSES = ("l1", "l2", "smooth_l1")
SEARCH_METRICS = ("fid", "miou", "psnr")


@dataclass(frozen=True)
class DataSettings:
    """Where the images are and how training crops are cut (the originals' load_size / crop_size / flip).

    Layouts: ``paired`` root/train holds A|B images side by side (pix2pix); ``unpaired`` root/trainA and
    root/trainB (CycleGAN); ``single`` root/train holds inputs only (the teacher's outputs are the targets).
    ``builtin: skimage-photos`` makes a ``single`` dataset of crops of scikit-image's photos instead of ``root``.
    """

    root: str | None = None
    builtin: str | None = None
    layout: str = "unpaired"
    direction: str = "AtoB"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    # The originals' meta files (one file name per line): which training images each stage uses. The supernet
    # trains on train_meta (train_meta_b: domain B of unpaired data); the search scores held_out_meta.
    train_meta: str | None = None
    train_meta_b: str | None = None
    held_out_meta: str | None = None
    held_out_fraction: float = 0.1  # without meta files: every n-th image (by name) is held out
    # builtin photos: training crops per photo, and held-out crops per photo (from a band no training crop
    # touches)
    crops_per_photo: int = 8
    held_out_crops_per_photo: int = 2


@dataclass(frozen=True)
class StudentSettings:
    ngf: int = 64  # the supernet's (and pre-distilled student's) full width
    n_blocks: int = 9
    search_space: str = "channels-64-cyclegan"


@dataclass(frozen=True)
class TrainingSettings:
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    gan_mode: str = "lsgan"
    ndf: int = 64
    n_layers_d: int = 3
    lambda_gan: float = 1.0
    lambda_recon: float = 10.0
    lambda_distill: float = 0.01
    recon_loss: str = "l1"  # l1 | l2 | smooth_l1
    # Keep the teacher's output and features per distinct training input instead of running it every step:
    # exact, and possible only when inputs repeat (data.load_size == data.crop_size: no random crop).
    cache_teacher: bool = False
    seed: int = 0
    checkpoint_every: int = 1000  # steps
    log_every: int = 10  # steps
    amp: bool = True  # bfloat16 autocast on a GPU; ignored on CPU
    threads: int | None = None  # CPU threads for torch (None: torch's default)


@dataclass(frozen=True)
class StageSettings:
    """A training stage's length: epochs + epochs_decay over the data (the originals), or steps + steps_decay.

    The learning rate stays constant, then decays linearly to zero over the decay part.
    """

    epochs: int | None = None
    epochs_decay: int | None = None
    steps: int | None = None
    steps_decay: int | None = None
    lr: float | None = None  # None: training.lr


@dataclass(frozen=True)
class SearchSettings:
    algorithm: str = "brute_force"  # brute_force | evolution
    budget: float = 3e9  # paper-convention MACs at the recipe's evaluation size
    metric: str = "fid"  # fid (against reference) | miou (segmenter + labels) | psnr (against the teacher)
    reference: str | None = None  # fid: real statistics .npz or an image folder
    segmenter: str | None = None
    labels: str | None = None
    input_size: int | None = None  # the size MACs are counted at (None: data.crop_size)
    batch_size: int = 8
    max_images: int | None = None
    population_size: int = 100
    iterations: int = 500
    mutate_prob: float = 0.2
    mutation_ratio: float = 0.5
    parent_ratio: float = 0.25
    weighted_sample: float = 1.0  # above 1 the first generation favours narrow widths (horse2zebra_fast: 2)


@dataclass(frozen=True)
class Stages:
    distill: StageSettings | None = None
    supernet: StageSettings | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    finetune: StageSettings | None = None


@dataclass(frozen=True)
class EvaluateSettings:
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim", "latency"])
    data: str = "held_out"  # held_out (the search split) or a folder gzoo eval reads
    max_images: int | None = None
    reference: str | None = None  # fid: real statistics .npz or an image folder
    segmenter: str | None = None  # miou: DRN-D-105 Cityscapes weights
    labels: str | None = None  # miou: train-id label maps named like the evaluation inputs


@dataclass(frozen=True)
class Recipe:
    method: str
    task: str
    teacher: str | None = None
    source: str | None = None
    data: DataSettings = field(default_factory=DataSettings)
    student: StudentSettings = field(default_factory=StudentSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    stages: Stages = field(default_factory=Stages)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    path: str | None = None  # the file it was read from (not a recipe key)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "path"}


def load_recipe(path: str | Path, overrides: list[str] = (), teacher: str | None = None,
                data: str | None = None) -> Recipe:
    """Read, override and validate a recipe; every problem is one GzooError naming the key."""
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
    recipe = replace(_build(Recipe, document, ""), path=str(path))
    _check(recipe)
    return recipe


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


def _build(cls: type, values: Any, where: str) -> Any:
    """The dataclass ``cls`` from a mapping, refusing unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise GzooError(f"recipe: {where or 'the recipe'} must be a mapping, not {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.name != "path"]
    arguments = {}
    for key, value in values.items():
        name = f"{where}{key}"
        if key not in known:
            raise GzooError(f"recipe: unknown key '{name}'{closest(str(key), known)}; known keys here: "
                            f"{', '.join(known)}")
        arguments[key] = _typed(hints[key], value, name)
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
               and f.name not in arguments]
    if missing:
        raise GzooError(f"recipe: '{where}{missing[0]}' is required")
    return cls(**arguments)


def _typed(hint: Any, value: Any, name: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if is_dataclass(option):
            return _build(option, value, f"{name}.")
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


def _check(recipe: Recipe) -> None:
    """Choices and combinations a type check cannot see."""
    from gzoo.compress.search import SEARCH_SPACES

    def one_of(value: Any, choices: tuple, name: str) -> None:
        if value not in choices:
            raise GzooError(f"recipe: '{name}' must be one of {', '.join(map(str, choices))}, not {value!r}")

    one_of(recipe.method, METHODS, "method")
    if not recipe.teacher:
        raise GzooError("recipe: no teacher; set 'teacher' to a zoo id or model directory, or pass --teacher")
    data = recipe.data
    if not data.root and not data.builtin:
        raise GzooError("recipe: no data; set 'data.root' to the dataset folder or pass --data DIR")
    if data.builtin:
        one_of(data.builtin, ("skimage-photos",), "data.builtin")
    one_of(data.layout, LAYOUTS, "data.layout")
    one_of(data.direction, ("AtoB", "BtoA"), "data.direction")
    if data.crop_size > data.load_size:
        raise GzooError(f"recipe: data.crop_size {data.crop_size} is larger than data.load_size {data.load_size}")
    one_of(recipe.student.search_space, tuple(SEARCH_SPACES), "student.search_space")
    widest = max(max(choices) for choices in SEARCH_SPACES[recipe.student.search_space])
    if widest > recipe.student.ngf:
        raise GzooError(f"recipe: search space {recipe.student.search_space} needs a supernet of ngf >= {widest}, "
                        f"student.ngf is {recipe.student.ngf}")
    one_of(recipe.training.gan_mode, GAN_MODES, "training.gan_mode")
    one_of(recipe.training.recon_loss, RECON_LOSSES, "training.recon_loss")
    if recipe.training.cache_teacher and data.load_size != data.crop_size:
        raise GzooError("recipe: training.cache_teacher needs data.load_size equal to data.crop_size (a random crop "
                        "rarely repeats, so there would be nothing to reuse)")
    for name in ("batch_size", "ndf", "n_layers_d", "checkpoint_every", "log_every"):
        if getattr(recipe.training, name) < 1:
            raise GzooError(f"recipe: 'training.{name}' must be at least 1")
    stages = recipe.stages
    needed = ("distill", "supernet") if recipe.method == "gan-compression" else ("supernet",)
    for name in needed:
        if getattr(stages, name) is None:
            raise GzooError(f"recipe: {recipe.method} needs a 'stages.{name}' section (its epochs or steps)")
    for name in ("distill", "supernet", "finetune"):
        stage = getattr(stages, name)
        if stage is None:
            continue
        by_epochs, by_steps = stage.epochs is not None, stage.steps is not None
        if by_epochs == by_steps:
            raise GzooError(f"recipe: 'stages.{name}' needs either epochs (+ epochs_decay) or steps (+ steps_decay)")
        length = [v for v in (stage.epochs, stage.epochs_decay, stage.steps, stage.steps_decay) if v is not None]
        if min(length) < 0 or sum(length) < 1:
            raise GzooError(f"recipe: 'stages.{name}' must train at least one step")
    search = stages.search
    one_of(search.algorithm, ("brute_force", "evolution"), "stages.search.algorithm")
    one_of(search.metric, SEARCH_METRICS, "stages.search.metric")
    if search.metric == "fid" and not search.reference:
        raise GzooError("recipe: search by fid needs 'stages.search.reference' (real statistics .npz or a folder)")
    if search.metric == "miou" and not (search.segmenter and search.labels):
        raise GzooError("recipe: search by miou needs 'stages.search.segmenter' and 'stages.search.labels'")
    if "miou" in recipe.evaluate.metrics and not (recipe.evaluate.segmenter and recipe.evaluate.labels):
        raise GzooError("recipe: evaluating miou needs 'evaluate.segmenter' and 'evaluate.labels'")
    # A budget below every config of the space fails here, before any training.
    from gzoo.compress.search import smallest_config_macs

    size = search.input_size or data.crop_size
    smallest, config = smallest_config_macs(recipe.student.search_space, size, recipe.student.n_blocks)
    if smallest > search.budget:
        raise GzooError(f"recipe: stages.search.budget {search.budget:.4g} is below the smallest config {config} of "
                        f"{recipe.student.search_space} ({smallest:.4g} MACs at {size}x{size}); raise the budget")
