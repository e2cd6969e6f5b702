"""`gzoo eval`: one measuring procedure for every generator and classifier, each number stored with provenance.

A generator runs over a dataset's inputs (gzoo.data.datasets reads the originals' layouts); its outputs are
quantised to uint8 as the originals save them and go to the Inception network in memory. FID and KID compare
them with a reference: a folder or .npz you give, else the dataset's real targets, else the teacher's outputs.
PSNR and SSIM compare the student's raw outputs with its teacher's on the same inputs. A classifier gets top-1
and top-5 accuracy on an ImageFolder-style directory. Every number goes to the results store.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo import results
from gzoo.data.datasets import EvalData, open_eval_data, quantise, save_images
from gzoo.data.images import ImageCounter
from gzoo.errors import GzooError
from gzoo.metrics import fid as fidlib
from gzoo.metrics import measure_latency, psnr, ssim
from gzoo.metrics.inception import inception_weights_path
from gzoo.metrics.miou import CITYSCAPES_CLASSES, Segmenter, confusion_matrix, load_segmenter, miou
from gzoo.metrics.miou import PROTOCOL as MIOU_PROTOCOL
from gzoo.zoo.hub import sha256_of
from gzoo.zoo.modeldir import CLASSIFIER_ARCHS, WEIGHTS, load_model_dir, read_config, results_key

GENERATOR_METRICS = ("fid", "kid", "psnr", "ssim", "miou", "latency")
CLASSIFIER_METRICS = ("top1", "top5", "latency")
FID_NAME = "FID, Inception-v3 pool3 (TF 2015-12-05)"

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
        shape = self.config.get("input") or {"channels": 3, "height": 256, "width": 256}
        return shape["channels"], shape["height"], shape["width"]

    @property
    def is_classifier(self) -> bool:
        return self.config.get("arch") in CLASSIFIER_ARCHS


def load_subject(directory: Path) -> Subject:
    config = read_config(directory)
    return Subject(load_model_dir(directory), results_key(directory, config), directory, config,
                   sha256_of(directory / WEIGHTS))


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

    def __post_init__(self) -> None:
        # Recipes and Python callers give paths as strings; everything below reads them as Paths.
        for name in ("reference", "save_images", "segmenter", "labels"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, Path(getattr(self, name)))


def evaluate(subject: Subject, data_root: Path, teacher: Subject | None, options: Options,
             device_name: str, progress: Progress | None = None, store: bool = True) -> dict[str, Any]:
    """Measure ``subject`` on the data; returns the numbers with their protocols (and stores them)."""
    if options.batch_size < 1:
        raise GzooError(f"--batch-size must be at least 1, not {options.batch_size}")
    if options.max_images is not None and options.max_images < 1:
        raise GzooError(f"--max-images must be at least 1, not {options.max_images}")
    if subject.is_classifier:
        measured, dataset, dataset_hash = _classifier(subject, data_root, options, progress)
    else:
        measured, dataset, dataset_hash = _generator(subject, data_root, teacher, options, progress)
    rows = [results.Result(subject.model_id, metric, value, protocol, device_name, subject.weights_sha256,
                           dataset, dataset_hash) for metric, (value, protocol) in measured.items()]
    if store:
        results.record(rows)
    return {"model": subject.model_id, "weights_sha256": subject.weights_sha256, "data": dataset,
            "data_sha256": dataset_hash, "device": device_name, "stored": store,
            "metrics": {row.metric: row.as_dict()["value"] for row in rows},
            "protocols": {row.metric: row.protocol for row in rows}}


def _chosen(asked: tuple[str, ...] | None, offered: tuple[str, ...], possible: dict[str, str | None]) -> list[str]:
    """The metrics to measure: those asked for (each must be possible), or every possible one."""
    if {"is", "isc"} & set(asked or ()):
        raise GzooError("the Inception Score needs the Inception classifier's logits, which the offline FID weights "
                        "lack (only the 2048-d features FID and KID use); measure fid or kid instead")
    unknown = [m for m in (asked or ()) if m not in offered]
    if unknown:
        raise GzooError(f"unknown metric {unknown[0]!r} for this model; choose from {', '.join(offered)}")
    for metric in asked or ():
        if possible.get(metric):
            raise GzooError(f"cannot measure {metric}: {possible[metric]}")
    return [m for m in (asked or offered) if not possible.get(m)]


# --- generators -------------------------------------------------------------------------------------------------

def _generator(subject: Subject, data_root: Path, teacher: Subject | None, options: Options,
               progress: Progress | None) -> tuple[dict, str, str]:
    channels, height, width = subject.input
    if channels != 3:
        raise GzooError(f"{subject.model_id} takes a {channels}-channel input ({subject.config.get('arch')}); "
                        "gzoo eval feeds RGB images, label-map generators are not supported yet")
    data = open_eval_data(data_root, options.mode, options.direction)
    if options.max_images:
        data = replace(data, inputs=replace(data.inputs, paths=data.inputs.paths[:options.max_images]))
    reference = options.reference
    fid_impossible = None if (reference or data.targets or teacher) else "no reference: give --reference " \
        "DIR|NPZ, a dataset with real targets (paired or testA/testB), or --teacher"
    no_teacher = None if teacher else "no teacher to compare with; give --teacher ID|DIR"
    no_segmenter = None if options.segmenter and options.labels else \
        "needs --segmenter WEIGHTS (DRN-D-105 Cityscapes) and --labels DIR (train-id maps named like the inputs)"
    metrics = _chosen(options.metrics, GENERATOR_METRICS, {
        "miou": no_segmenter,
        "fid": fid_impossible, "kid": fid_impossible or (
            "KID needs reference images, not statistics" if reference and reference.suffix == ".npz" else None),
        "psnr": no_teacher, "ssim": no_teacher})
    wants_inception = "fid" in metrics or "kid" in metrics
    weights, weights_source = inception_weights_path(options.inception_weights) if wants_inception else (None, None)
    inception = fidlib.InceptionFeatures(weights) if weights else None
    counter = ImageCounter(len(data) + (len(data.targets) if inception and data.targets and not reference else 0),
                           progress)
    outputs = _run_generator(subject, teacher, data, metrics, inception, options,
                             partial(counter.advance, label="images"))
    measured: dict[str, tuple[float, dict]] = {}
    base = {"images": len(data), "data": data.describe(), "input": f"{width}x{height} bicubic, [-1, 1]"}
    if teacher is not None and ("psnr" in metrics or "ssim" in metrics):
        against = {**base, "teacher": teacher.model_id, "teacher_weights_sha256": teacher.weights_sha256}
        for metric in ("psnr", "ssim"):
            if metric in metrics:
                name = f"{metric.upper()} against the teacher's outputs, range [-1, 1], mean over images"
                measured[metric] = (outputs[metric] / len(data), {"name": name, **against})
    if inception is not None:
        ref_features, ref_protocol = _reference_features(data, reference, teacher, outputs, inception, height, width,
                                                         options, partial(counter.advance, label="reference"))
        common = {**base, "features": fidlib.PROTOCOL, "inception_weights": weights_source,
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
        measured["miou"] = (value, {"name": MIOU_PROTOCOL if isinstance(options.segmenter, Path) else
                                    "mIoU %, a segmenter given through the Python API", **base,
                                    "labels": str(options.labels)})
    if "latency" in metrics:
        measured["latency_ms"] = _latency(subject.model, outputs["example"], options.threads)
    return measured, str(data.root), data.content_hash()


def _run_generator(subject: Subject, teacher: Subject | None, data: EvalData, metrics: list[str],
                   inception: "fidlib.InceptionFeatures | None", options: Options,
                   advance: Callable[[int], None]) -> dict[str, Any]:
    """One pass over the inputs: sums of per-image PSNR/SSIM, Inception features of the (teacher's) outputs."""
    _, height, width = subject.input
    sums = {"psnr": 0.0, "ssim": 0.0}
    features, teacher_features, example = [], [], None
    segment = _segmentation(data, options) if "miou" in metrics else None
    confusion = torch.zeros(CITYSCAPES_CLASSES, CITYSCAPES_CLASSES, dtype=torch.int64)
    # The teacher's outputs serve PSNR/SSIM, and FID/KID when they are the only reference.
    teacher_as_reference = inception is not None and options.reference is None and data.targets is None
    run_teacher = teacher is not None and ("psnr" in metrics or "ssim" in metrics or teacher_as_reference)
    done = 0
    with torch.inference_mode():
        for batch in data.input_batches(height, width, options.batch_size):
            example = batch[:1] if example is None else example
            output = subject.model(batch).clamp(-1, 1)
            images = quantise(output)
            if options.save_images:
                save_images(images, options.save_images, [p.name for p in data.inputs.paths[done:done + len(batch)]])
            if run_teacher:
                expected = teacher.model(batch).clamp(-1, 1)
                for index in range(len(batch)):
                    one, other = output[index:index + 1], expected[index:index + 1]
                    sums["psnr"] += psnr(one, other) if "psnr" in metrics else 0.0
                    sums["ssim"] += ssim(one, other) if "ssim" in metrics else 0.0
                if teacher_as_reference:
                    teacher_features.append(inception.extract([quantise(expected)]))
            if inception is not None:
                features.append(inception.extract([images]))
            if segment is not None:
                confusion += segment(images, data.inputs.paths[done:done + len(batch)])
            done += len(batch)
            advance(len(batch))
    return {**sums, "example": example, "confusion": confusion,
            "features": torch.cat(features) if features else None,
            "teacher_features": torch.cat(teacher_features) if teacher_features else None}


def _reference_features(data: EvalData, reference: Path | None, teacher: Subject | None, outputs: dict,
                        inception: "fidlib.InceptionFeatures", height: int, width: int, options: Options,
                        advance: Callable[[int], None]) -> tuple[Any, dict]:
    """The FID/KID reference as features (or .npz statistics) and how it was chosen."""
    from gzoo.data import scan_image_folder

    if reference is not None and reference.suffix == ".npz" and not reference.is_dir():
        return fidlib.load_npz_statistics(reference), {"reference": f"statistics {reference.name}",
                                                        "reference_sha256": sha256_of(reference)}
    if reference is not None:
        folder = scan_image_folder(reference)
        content = folder.content_hash()
        features, _ = inception.cached(content, "as stored", len(folder), partial(folder.batches, options.batch_size),
                                       advance)
        return features, {"reference": f"images of {reference} ({len(folder)})", "reference_sha256": content}
    if data.targets is not None:
        targets = data.targets
        content = targets.content_hash()
        variant = f"{data.mode} {data.direction} targets resized to {width}x{height} bicubic"
        features, _ = inception.cached(content, variant, len(targets),
                                       partial(data.target_batches, height, width, options.batch_size), advance)
        side = "B" if data.direction == "AtoB" else "A"
        return features, {"reference": f"real {side} images of {data.root} ({len(targets)})",
                          "reference_sha256": content}
    assert teacher is not None  # _chosen refused FID without any reference
    return outputs["teacher_features"], {"reference": f"outputs of the teacher {teacher.model_id}",
                                         "teacher_weights_sha256": teacher.weights_sha256}


def _segmentation(data: EvalData, options: Options) -> Callable[[torch.Tensor, tuple[Path, ...]], torch.Tensor]:
    """A function from (generated uint8 images, their input paths) to the confusion matrix against the labels."""
    segmenter = load_segmenter(options.segmenter) if isinstance(options.segmenter, Path) else options.segmenter
    labels_dir = Path(options.labels)
    missing = [p for p in data.inputs.paths if not (labels_dir / f"{p.stem}.png").is_file()]
    if missing:
        raise GzooError(f"{labels_dir}: no label map {missing[0].stem}.png for input {missing[0].name} "
                        f"({len(missing)} missing); name each train-id label map after its input")

    def confusion(images: torch.Tensor, paths: tuple[Path, ...]) -> torch.Tensor:
        maps = [read_label_map(labels_dir / f"{p.stem}.png") for p in paths]
        if any(m.shape != maps[0].shape for m in maps):
            raise GzooError(f"{labels_dir}: label maps of different sizes ({paths[0].stem}.png "
                            f"{tuple(maps[0].shape)}); give label maps of one size")
        labels = torch.stack(maps)
        return confusion_matrix(segmenter(images, tuple(labels.shape[-2:])), labels, CITYSCAPES_CLASSES)

    return confusion


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


def _classifier(subject: Subject, data_root: Path, options: Options,
                progress: Progress | None) -> tuple[dict, str, str]:
    """Top-1/top-5 accuracy (%) on class folders named by ImageNet class index (0..999) or WordNet id."""
    from gzoo.data import scan_image_folder

    metrics = _chosen(options.metrics, CLASSIFIER_METRICS, {})
    if not data_root.is_dir():
        raise GzooError(f"{data_root}: no such folder; give a folder of class folders (0 ... 999, or n01440764 ...)")
    classes = sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise GzooError(f"{data_root}: it has no class folders; name each by its ImageNet index or WordNet id")
    labels = {folder: _imagenet_class(folder.name) for folder in classes}
    folders = {folder: scan_image_folder(folder, same_size=False) for folder in classes}
    samples = []
    for folder in classes:
        samples += [(path, labels[folder]) for path in folders[folder].paths]
    if options.max_images:
        samples = samples[:options.max_images]
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
                "images": len(samples), "classes": len(classes)}
    measured = {m: (100 * correct[m] / len(samples), protocol) for m in ("top1", "top5") if m in metrics}
    if "latency" in metrics:
        measured["latency_ms"] = _latency(subject.model, example, options.threads)
    content = "+".join(scanned.content_hash() for scanned in folders.values())
    return measured, str(data_root), _sha256_text(content)


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
