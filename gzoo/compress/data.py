"""Training data for the compression stages, read and augmented the way the originals' datasets do.

Every image is resized to ``load_size`` (bicubic), cropped at random to ``crop_size`` and flipped at random
(pix2pix/CycleGAN's ``resize_and_crop`` + flip), then scaled to [-1, 1]. The random choices of a sample are a
function of (seed, step, position in the global batch), so a resumed run sees the batches the killed one would
have seen, and N processes of a torchrun job together see the batch one process would.

Splits follow GAN Compression: the training stages use ``train_meta`` (a text file of file names), the search
scores the sub-networks on ``held_out_meta``; without meta files every n-th image by name is held out.

The ``cityscapes`` layout (GauGAN) reads gtFine label and instance maps with their leftImg8bit photos as the
original's cityscapes dataset does (``gzoo.data.cityscapes``): inputs are the one-hot label maps with instance
edges (``label_map_to_input``), targets the photos; its splits list the label maps.
"""

import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gzoo.compress.settings import DataSettings
from gzoo.data import cityscapes
from gzoo.data.datasets import paired_halves, to_unit_range
from gzoo.data.images import IMAGE_SUFFIXES, open_rgb
from gzoo.errors import GzooError
from gzoo.models.spade import SPADE_DATASETS, label_map_to_input

# The builtin demo data: scikit-image's colour photographs (stereo_motorcycle: its left view), each scaled so its
# shorter side is data.photo_scale crops: room for a grid of training crops beside the held-out band.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                  "stereo_motorcycle")


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor
    targets: torch.Tensor | None  # None for single data
    keys: tuple[str, ...]  # which image, crop and flip each input is: equal keys, equal inputs


@dataclass(frozen=True)
class Splits:
    train: tuple[Path, ...]
    train_b: tuple[Path, ...]  # unpaired: domain-B images the discriminator sees as real; otherwise empty
    held_out: tuple[Path, ...]
    frames: dict[Path, cityscapes.Frame] = field(default_factory=dict)  # cityscapes: each label map's frame


class TrainingData:
    """Batches of augmented (input, target) pairs for one training stage."""

    def __init__(self, settings: DataSettings, splits: Splits) -> None:
        self.settings, self.splits = settings, splits
        self.layout = settings.layout
        self._last_order: tuple[tuple[int, int] | None, list[int]] = (None, [])

    def __len__(self) -> int:
        return len(self.splits.train)

    def batch(self, step: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1) -> Batch:
        """This process's share of global batch ``step``."""
        inputs, targets, keys = [], [], []
        for position in range(rank, global_batch, world_size):
            rng = random.Random(f"{seed}:{step}:{position}")
            # Each pass over the data is a fresh permutation; the step picks its place in it.
            index = step * global_batch + position
            epoch, offset = divmod(index, len(self.splits.train))
            path = self.splits.train[self._order(seed, epoch)[offset]]
            if self.layout == "cityscapes":
                sample, key = self._frame(path, rng)
                inputs.append(label_map_to_input(sample.labels, "cityscapes", sample.instance)[0])
                targets.append(to_unit_range(sample.photo))
                keys.append(key)
                continue
            image, target = self._pair(path, rng)
            crop = self._draw_crop(rng)
            inputs.append(self._augment(image, crop))
            keys.append(":".join(map(str, (path.name, *crop))))
            if target is not None:
                # Paired halves are cropped alike; an unpaired B image gets a crop of its own.
                targets.append(self._augment(target, crop if self.layout == "paired" else self._draw_crop(rng)))
        return Batch(torch.stack(inputs), torch.stack(targets) if targets else None, tuple(keys))

    def _order(self, seed: int, epoch: int) -> list[int]:
        """The permutation of the training images for one pass, kept while the steps stay in that pass."""
        if self._last_order[0] != (seed, epoch):
            order = list(range(len(self.splits.train)))
            random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
            self._last_order = ((seed, epoch), order)
        return self._last_order[1]

    def _pair(self, path: Path, rng: random.Random) -> tuple[Image.Image, Image.Image | None]:
        image = open_rgb(path)
        if self.layout == "paired":
            return paired_halves(image, self.settings.direction)
        if self.layout == "unpaired":
            return image, open_rgb(rng.choice(self.splits.train_b))  # CycleGAN draws B independently of A
        return image, None

    def _frame(self, path: Path, rng: random.Random) -> tuple[cityscapes.FrameSample, str]:
        """A cityscapes frame scaled, cropped and flipped as the original's get_params draws it, and its key."""
        frame, settings = self.splits.frames[path], self.settings
        size = cityscapes.image_size(frame.labels)
        width, height = cityscapes.scaled_size(size, settings.load_size)
        crop = cityscapes.crop_size_of(size, settings.load_size, settings.crop_size)
        crop_width, crop_height = crop or (0, 0)
        left, top = rng.randint(0, max(0, width - crop_width)), rng.randint(0, max(0, height - crop_height))
        flip = settings.flip and rng.random() > 0.5
        box = (left, top, left + crop_width, top + crop_height) if crop else None
        key = ":".join(map(str, (path.name, *(box[:2] if box else (0, 0)), flip)))
        return cityscapes.load_frame(frame, settings.load_size, box, flip), key

    def _draw_crop(self, rng: random.Random) -> tuple[int, int, bool]:
        """Left, top and whether to flip."""
        room = self.settings.load_size - self.settings.crop_size
        return rng.randint(0, room), rng.randint(0, room), self.settings.flip and rng.random() < 0.5

    def _augment(self, image: Image.Image, crop: tuple[int, int, bool]) -> torch.Tensor:
        size, side = self.settings.load_size, self.settings.crop_size
        left, top, flip = crop
        image = image.resize((size, size), Image.BICUBIC).crop((left, top, left + side, top + side))
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return to_unit_range(image)


def input_channels(settings: DataSettings) -> int:
    """The channels of the inputs this data feeds a student: RGB images, or cityscapes label maps (36)."""
    return SPADE_DATASETS["cityscapes"].label_nc if settings.layout == "cityscapes" else 3


def held_out_inputs(settings: DataSettings, splits: Splits, size: int) -> tuple[torch.Tensor, list[str]]:
    """The held-out split's inputs resized to ``size`` (bicubic, no crop or flip), and their file names.

    cityscapes: the label maps as generator inputs (B, 36, 256, 512), their width scaled to crop_size (NEAREST, no
    crop or flip: the original's test transform where load_size = crop_size); ``size`` is not used."""
    if settings.layout == "cityscapes":
        samples = [cityscapes.load_frame(splits.frames[path], settings.crop_size, photo=False)
                   for path in splits.held_out]
        inputs = label_map_to_input(torch.stack([s.labels for s in samples]), "cityscapes",
                                    torch.stack([s.instance for s in samples]))
        return inputs, [p.name for p in splits.held_out]
    images = []
    for path in splits.held_out:
        image = open_rgb(path)
        if settings.layout == "paired":
            image = paired_halves(image, settings.direction)[0]
        images.append(to_unit_range(image.resize((size, size), Image.BICUBIC)))
    return torch.stack(images), [p.name for p in splits.held_out]


def find_splits(settings: DataSettings, root: Path) -> Splits:
    """The training and held-out images of a dataset folder, by the recipe's meta files or by name."""
    source, other = ("A", "B") if settings.direction == "AtoB" else ("B", "A")
    frames: dict[Path, cityscapes.Frame] = {}
    if settings.layout == "cityscapes":
        frames = {frame.labels: frame for frame in cityscapes.find_frames(root, "train")}
        spade = SPADE_DATASETS["cityscapes"]
        cityscapes.check_frame_sizes(frames.values(), settings.load_size, settings.crop_size,
                                     (spade.height, spade.width), "set data.load_size and data.crop_size to 512 "
                                     "for 2:1 frames (the original's cityscapes defaults)")
        folder, folder_b = root / "gtFine" / "train", None
    elif settings.layout == "unpaired":
        folder, folder_b = root / f"train{source}", root / f"train{other}"
    else:
        folder, folder_b = root / "train", None
    images = tuple(frames) if frames else _images(folder, settings.layout)
    if settings.held_out_meta:
        held_out = _listed(images, settings.held_out_meta)
        train = _listed(images, settings.train_meta) if settings.train_meta else \
            tuple(p for p in images if p not in set(held_out))
    else:
        if not 0 < settings.held_out_fraction < 1:
            raise GzooError("recipe: data.held_out_fraction must be between 0 and 1 (or give data.held_out_meta)")
        every = max(2, round(1 / settings.held_out_fraction))
        held_out = images[::every]
        pool = _listed(images, settings.train_meta) if settings.train_meta else images
        train = tuple(p for p in pool if p not in set(held_out))
    if set(train) & set(held_out):
        raise GzooError(f"{root}: the training and held-out splits share images; fix data.train_meta or "
                        "data.held_out_meta")
    train_b: tuple[Path, ...] = ()
    if folder_b is not None:
        images_b = _images(folder_b, settings.layout)
        train_b = _listed(images_b, settings.train_meta_b) if settings.train_meta_b else images_b
    if not train or not held_out:
        raise GzooError(f"{root}: {len(train)} training and {len(held_out)} held-out images; both splits need at "
                        "least one")
    return Splits(train, train_b, held_out, frames)


def _images(folder: Path, layout: str) -> tuple[Path, ...]:
    if not folder.is_dir():
        expected = {"paired": "train/ with A|B images side by side", "unpaired": "trainA/ and trainB/",
                    "single": "train/ with the input images", "classes": "train/ with a folder per class"}[layout]
        raise GzooError(f"{folder}: no such folder; the {layout} layout holds {expected} (see the README)")
    candidates = folder.glob("*/*") if layout == "classes" else folder.iterdir()
    images = tuple(sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES))
    if not images:
        raise GzooError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _listed(images: tuple[Path, ...], meta: str) -> tuple[Path, ...]:
    """The images named in a meta file (one file name per line), in the file's order."""
    try:
        names = [line.strip() for line in Path(meta).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise GzooError(f"cannot read meta file {meta}: {err.strerror}; fix the path in the recipe") from None
    by_name = {p.name: p for p in images}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise GzooError(f"meta file {meta} names {len(missing)} images missing from {images[0].parent} "
                        f"(first: {missing[0]}); is it the meta file of this dataset?")
    return tuple(by_name[n] for n in names)


def make_skimage_photos(root: Path, settings: DataSettings) -> DataSettings:
    """Write crops of scikit-image's photographs as a ``single`` dataset under ``root`` with its meta files.

    Each photo is scaled so its shorter side is ``photo_scale`` times ``load_size``; ``photo_crop_boxes`` places
    its held-out crops in a band along the right edge and its training crops on a grid over the rest, so no
    held-out pixel is ever trained on and both splits come from the same photos (as GAN Compression's
    train1/train2 meta files split one dataset). Returns the data settings that read it.
    """
    try:
        from skimage import data
    except ImportError:
        raise GzooError("the builtin skimage-photos data needs scikit-image: pip install 'gzoo[demo]'") from None
    size = settings.load_size
    folder = root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {"train": [], "held_out": []}
    for name in SKIMAGE_PHOTOS:
        array = getattr(data, name)()
        array = array[0] if isinstance(array, tuple) else array  # stereo_motorcycle: (left, right, disparity)
        image = Image.fromarray(np.asarray(array)).convert("RGB")
        scale = settings.photo_scale * size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        boxes = photo_crop_boxes(image.width, image.height, size, settings.crops_per_photo,
                                 settings.held_out_crops_per_photo)
        for split, corners in boxes.items():
            for index, (left, top) in enumerate(corners):
                file = f"{name}_{split}_{index:02d}.png"
                image.crop((left, top, left + size, top + size)).save(folder / file)
                lists[split].append(file)
    for split, files in lists.items():
        (root / f"{split}.meta").write_text("\n".join(files) + "\n")
    return skimage_photos_settings(root, settings)


def photo_crop_boxes(width: int, height: int, size: int, train: int, held_out: int) -> dict[str, list[tuple[int, int]]]:
    """Top-left corners of the square crops of one photo: ``held_out`` crops top to bottom in the band of width
    ``size`` along its right edge, ``train`` crops on an evenly spaced grid (row by row) over the rest."""
    band = width - size  # held-out crops start here; training crops end at or before it
    if band < size or height < size:
        raise GzooError(f"a {width}x{height} photo has no room for training and held-out crops of {size}")
    columns = math.ceil(math.sqrt(train))
    rows = math.ceil(train / columns)

    def spaced(room: int, index: int, count: int) -> int:
        return room * index // max(count - 1, 1)

    return {"train": [(spaced(band - size, i % columns, columns), spaced(height - size, i // columns, rows))
                      for i in range(train)],
            "held_out": [(band, spaced(height - size, i, held_out)) for i in range(held_out)]}


def skimage_photos_settings(root: Path, settings: DataSettings) -> DataSettings:
    """The data settings that read the photo crops ``make_skimage_photos`` wrote under ``root``."""
    return replace(settings, root=str(root), builtin=None, layout="single", train_meta=str(root / "train.meta"),
                   held_out_meta=str(root / "held_out.meta"))
