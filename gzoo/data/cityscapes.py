"""The Cityscapes folder as SPADE's and CAT's ``--dataset_mode cityscapes`` reads it (GauGAN's label-map data).

::

    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      label ids 0..33
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   instance ids (int32 'I' images)
    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     the photo

A frame's files are paired by the first three ``_`` parts of their names, as the original's ``paths_match``
does; photos without a label map are not read. Preprocessing is the original's cityscapes default (preprocess
``scale_width``, load_size = crop_size = 512, flip): the width scaled to ``load_size`` keeping the aspect ratio,
label and instance maps NEAREST, the photo BICUBIC; where load_size > crop_size (``scale_width_and_crop``) a random
crop of crop_size x crop_size * h // w; a random horizontal flip; the same crop and flip for all three.

This module reads integer maps and photos; the generator input (one-hot labels + instance edges) is built above
it with ``gzoo.models.spade.label_map_to_input``.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from gzoo.data.images import open_rgb
from gzoo.errors import GzooError

LABEL_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
PHOTO_SUFFIX = "_leftImg8bit.png"
LAYOUT_HINT = ("root/gtFine/<split>/<city>/*_gtFine_labelIds.png and *_gtFine_instanceIds.png, "
               "root/leftImg8bit/<split>/<city>/*_leftImg8bit.png")

# Cityscapes label id -> train id, the table of cityscapesScripts' cityscapesscripts/helpers/labels.py (ids 0..33;
# 255: not one of the 19 train classes, ignored by the mIoU). License plates (id -1) are not drawn in labelIds.
TRAIN_IDS = (255, 255, 255, 255, 255, 255, 255,  # unlabeled, ego vehicle, rectification border, out of roi, static,
             # dynamic, ground
             0, 1, 255, 255,  # road, sidewalk, parking, rail track
             2, 3, 4, 255, 255, 255,  # building, wall, fence, guard rail, bridge, tunnel
             5, 255, 6, 7,  # pole, polegroup, traffic light, traffic sign
             8, 9, 10,  # vegetation, terrain, sky
             11, 12,  # person, rider
             13, 14, 15, 255, 255, 16, 17, 18)  # car, truck, bus, caravan, trailer, train, motorcycle, bicycle
LABEL_IDS = len(TRAIN_IDS)  # 34


@dataclass(frozen=True)
class Frame:
    """One Cityscapes frame: its label-id map, instance-id map and photo."""

    labels: Path
    instance: Path
    photo: Path

    @property
    def stem(self) -> str:
        """``<city>_<seq>_<frame>``: what pairs the three files."""
        return frame_stem(self.labels.name)


def frame_stem(name: str) -> str:
    return "_".join(name.split("_")[:3])


def is_cityscapes(root: Path) -> bool:
    """Whether ``root`` is a Cityscapes root (gtFine/ and leftImg8bit/ folders)."""
    return (root / "gtFine").is_dir() and (root / "leftImg8bit").is_dir()


def find_frames(root: Path, split: str) -> tuple[Frame, ...]:
    """Every frame of ``split`` with its three files, sorted by label-map name; a label map without its instance
    map or photo is one error naming it."""
    labels_dir, photos_dir = root / "gtFine" / split, root / "leftImg8bit" / split
    for folder in (labels_dir, photos_dir):
        if not folder.is_dir():
            found = sorted(p.name for p in (root / "gtFine").glob("*") if p.is_dir()) if is_cityscapes(root) else []
            there = f"; its splits: {', '.join(found)}" if found else ""
            raise GzooError(f"{folder}: no such folder; the cityscapes layout is {LAYOUT_HINT}{there}")
    photos = {frame_stem(p.name): p for p in photos_dir.glob(f"*/*{PHOTO_SUFFIX}")}
    frames = []
    for labels in sorted(labels_dir.glob(f"*/*{LABEL_SUFFIX}"), key=lambda p: p.name):
        stem = frame_stem(labels.name)
        instance = labels.with_name(f"{stem}{INSTANCE_SUFFIX}")
        if not instance.is_file():
            raise GzooError(f"{labels}: no instance map {instance.name} beside it; every label map needs its "
                            "gtFine instanceIds (as SPADE's cityscapes mode reads them)")
        if stem not in photos:
            raise GzooError(f"{labels}: no photo {stem}{PHOTO_SUFFIX} under {photos_dir}; every label map needs "
                            "its leftImg8bit photo")
        frames.append(Frame(labels, instance, photos[stem]))
    if not frames:
        raise GzooError(f"{labels_dir}: no *{LABEL_SUFFIX} label maps; the cityscapes layout is {LAYOUT_HINT}")
    return tuple(frames)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as err:
        raise GzooError(f"cannot decode {path}: {err}; remove or replace the file") from None


def scaled_size(size: tuple[int, int], load_size: int) -> tuple[int, int]:
    """(width, height) after scale_width: the width to ``load_size``, the height as the original's int()."""
    width, height = size
    return load_size, int(load_size * height / width)


def crop_size_of(size: tuple[int, int], load_size: int, crop_size: int) -> tuple[int, int] | None:
    """(width, height) of the random crop (scale_width_and_crop: crop_size x crop_size * h // w), or None where
    load_size <= crop_size (scale_width alone: no crop)."""
    width, height = size
    return (crop_size, crop_size * height // width) if load_size > crop_size else None


def output_size(size: tuple[int, int], load_size: int, crop_size: int) -> tuple[int, int]:
    """(width, height) of a preprocessed frame whose files are ``size``."""
    return crop_size_of(size, load_size, crop_size) or scaled_size(size, load_size)


def check_frame_sizes(frames: Iterable[Frame], load_size: int, crop_size: int, expected: tuple[int, int],
                      fix: str) -> None:
    """One line (ending in ``fix``) when a frame preprocessed at load_size / crop_size is not ``expected`` (height,
    width); only the label maps' headers are read."""
    for frame in frames:
        size = image_size(frame.labels)
        width, height = output_size(size, load_size, crop_size)
        if (height, width) != expected:
            raise GzooError(f"{frame.labels}: a {size[0]}x{size[1]} frame scaled to width {load_size}"
                            f"{f' and cropped to {crop_size}' if load_size > crop_size else ''} gives {width}x{height} "
                            f"label maps, but the generator takes {expected[1]}x{expected[0]}; {fix}")


@dataclass(frozen=True)
class FrameSample:
    labels: torch.Tensor  # int64 H x W, label ids
    instance: torch.Tensor  # int64 H x W, instance ids
    photo: Image.Image | None  # RGB; None when not asked for


def load_frame(frame: Frame, width: int, crop: tuple[int, int, int, int] | None = None,
               flip: bool = False, photo: bool = True) -> FrameSample:
    """A frame with its width scaled to ``width`` (maps NEAREST, photo BICUBIC), then cut to ``crop`` (left, top,
    right, bottom) and flipped left to right, all three alike; without the photo unless ``photo``."""
    maps = []
    for path in (frame.labels, frame.instance):
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, UnidentifiedImageError) as err:
            raise GzooError(f"cannot decode {path}: {err}; remove or replace the file") from None
        maps.append(image)
    photos = [open_rgb(frame.photo)] if photo else []
    if any(image.size != maps[0].size for image in (*maps, *photos)):
        raise GzooError(f"{frame.stem}: its label map, instance map and photo differ in size "
                        f"({', '.join('x'.join(map(str, image.size)) for image in (*maps, *photos))}); give the three "
                        "files of one frame at one size")
    size = scaled_size(maps[0].size, width)
    images = [image.resize(size, Image.NEAREST) for image in maps] + [image.resize(size, Image.BICUBIC)
                                                                       for image in photos]
    images = [image.crop(crop) if crop else image for image in images]
    if flip:
        images = [image.transpose(Image.FLIP_LEFT_RIGHT) for image in images]
    labels, instance = (torch.from_numpy(np.asarray(image, dtype=np.int64).copy()) for image in images[:2])
    check_label_ids(labels, frame.labels)
    return FrameSample(labels, instance, images[2] if photo else None)


def read_train_ids(path: Path) -> torch.Tensor:
    """A label-id map at its own size converted to train ids (int64 H x W; 255 for the ignored labels)."""
    with Image.open(path) as image:
        ids = torch.from_numpy(np.asarray(image, dtype=np.int64).copy())
    return to_train_ids(ids, path)


def to_train_ids(label_ids: torch.Tensor, source: object = "label map") -> torch.Tensor:
    """Cityscapes label ids (0..33) to train ids (0..18, 255 ignored) by ``TRAIN_IDS``."""
    check_label_ids(label_ids, source)
    return torch.tensor(TRAIN_IDS, dtype=torch.int64)[label_ids]


def check_label_ids(label_ids: torch.Tensor, source: object) -> None:
    """One line when a map holds a value that is no Cityscapes label id (a trainIds or color map given)."""
    bad = label_ids[(label_ids < 0) | (label_ids >= LABEL_IDS)]
    if len(bad):
        raise GzooError(f"{source}: holds label {int(bad[0])}, outside Cityscapes' label ids 0..{LABEL_IDS - 1}; "
                        f"give the gtFine *{LABEL_SUFFIX} maps (not trainIds or color)")
