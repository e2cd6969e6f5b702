"""The evaluation data layouts of the originals, read the way their test scripts read them.

- paired: one folder of A|B images side by side (pix2pix); the input is one half, the target the other;
- unpaired: a folder holding ``testA`` and ``testB`` (or ``valA``/``valB``) folders (CycleGAN); the targets, FID's
  reference, are the target domain's train and test images together where there is a ``trainB`` (the CycleGAN
  protocol of GAN Compression, whose ``horse2zebra_B.npz`` holds train+test zebras; test images alone raise FID
  by about 4);
- single: a folder of inputs, no targets;
- cityscapes: a Cityscapes root (gtFine/ and leftImg8bit/, one split: ``val`` by default) for label-map
  generators (GauGAN): the inputs are the label and instance maps of each frame (``gzoo.data.cityscapes``, resized
  NEAREST), the targets its photos.

Inputs are resized to the model's input size with bicubic filtering and scaled to [-1, 1] (the originals'
``Resize`` + ``ToTensor`` + ``Normalize(0.5, 0.5)``); targets are resized the same way and kept as uint8.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from gzoo.data import cityscapes
from gzoo.data.images import ImageFolder, merge_image_folders, open_rgb, scan_image_folder, to_uint8_tensor
from gzoo.errors import GzooError

MODES = ("auto", "paired", "unpaired", "single", "cityscapes")
DIRECTIONS = ("AtoB", "BtoA")
UNPAIRED_SPLITS = ("test", "val")


@dataclass(frozen=True)
class EvalData:
    root: Path
    mode: str  # paired | unpaired | single
    direction: str
    inputs: ImageFolder  # cityscapes: the label-id maps
    targets: ImageFolder | None  # unpaired: the other domain's train+test images; paired: the inputs' folder itself
    frames: tuple[cityscapes.Frame, ...] = ()  # cityscapes: each input's label map, instance map and photo
    split: str = ""  # cityscapes: the split read

    def __len__(self) -> int:
        return len(self.inputs)

    def first(self, count: int) -> "EvalData":
        """The first ``count`` inputs only (the targets, FID's reference, stay whole)."""
        return replace(self, inputs=replace(self.inputs, paths=self.inputs.paths[:count]), frames=self.frames[:count])

    def describe(self) -> str:
        if self.mode == "cityscapes":
            return f"cityscapes {self.split} label and instance maps of {self.root}"
        if self.mode == "paired":
            return f"paired A|B images of {self.root}, {self.direction}"
        if self.mode == "unpaired":
            return f"unpaired {self.inputs.root.name} -> {target_folders(self)} of {self.root}"
        return f"single folder {self.root}"

    def content_hash(self) -> str:
        hashes = [self.inputs.content_hash()]
        if self.mode == "cityscapes":
            instances = ImageFolder(self.root, tuple(f.instance for f in self.frames), self.inputs.size, ())
            hashes += [instances.content_hash(), self.targets.content_hash()]
        if self.mode == "unpaired":
            hashes.append(self.targets.content_hash())
        return hashes[0] if len(hashes) == 1 else "+".join(hashes)

    def input_batches(self, height: int, width: int, batch_size: int) -> Iterator[torch.Tensor]:
        """Model inputs: float N x 3 x H x W in [-1, 1]."""
        for paths in _chunks(self.inputs.paths, batch_size):
            yield torch.stack([to_unit_range(_resized(self._input_half(p), height, width)) for p in paths])

    def label_batches(self, width: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """cityscapes: (label ids, instance ids), int64 N x H x W, each frame's width scaled to ``width``
        (NEAREST, the original's test transform)."""
        for frames in _chunks(self.frames, batch_size):
            samples = [cityscapes.load_frame(frame, width, photo=False) for frame in frames]
            yield torch.stack([s.labels for s in samples]), torch.stack([s.instance for s in samples])

    def target_batches(self, height: int, width: int, batch_size: int) -> Iterator[torch.Tensor]:
        """Real targets (the FID reference): uint8 N x 3 x H x W, resized as the inputs are."""
        if self.targets is None:
            raise GzooError(f"{self.root}: a single folder has no real targets; pass --reference DIR for FID")
        paths = self.targets.paths
        for chunk in _chunks(paths, batch_size):
            images = [self._target_half(p) if self.mode == "paired" else open_rgb(p) for p in chunk]
            yield torch.stack([to_uint8_tensor(_resized(image, height, width)) for image in images])

    def _input_half(self, path: Path) -> Image.Image:
        image = open_rgb(path)
        return paired_halves(image, self.direction)[0] if self.mode == "paired" else image

    def _target_half(self, path: Path) -> Image.Image:
        return paired_halves(open_rgb(path), self.direction)[1]


def open_eval_data(root: str | Path, mode: str = "auto", direction: str = "AtoB", split: str = "val") -> EvalData:
    """Find the layout of ``root`` (or check the one asked for) and list its images; ``split``: the cityscapes
    split read."""
    root = Path(root)
    if mode not in MODES:
        raise GzooError(f"unknown data mode {mode!r}; use one of {', '.join(MODES)}")
    if direction not in DIRECTIONS:
        raise GzooError(f"unknown direction {direction!r}; use AtoB or BtoA")
    if mode == "cityscapes" or (mode == "auto" and cityscapes.is_cityscapes(root)):
        frames = cityscapes.find_frames(root, split)
        size = cityscapes.image_size(frames[0].labels)
        return EvalData(root, "cityscapes", direction, ImageFolder(root, tuple(f.labels for f in frames), size, ()),
                        ImageFolder(root, tuple(f.photo for f in frames), size, ()), frames, split)
    split = next((s for s in UNPAIRED_SPLITS if (root / f"{s}A").is_dir() and (root / f"{s}B").is_dir()), None)
    if mode in ("auto", "unpaired") and split:
        source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
        domain = [root / f"{s}{target}" for s in ("train", split) if (root / f"{s}{target}").is_dir()]
        return EvalData(root, "unpaired", direction, scan_image_folder(root / f"{split}{source}"),
                        merge_image_folders(root, [scan_image_folder(folder) for folder in domain]))
    if mode == "unpaired":
        raise GzooError(f"{root}: no testA/testB (or valA/valB) folders for unpaired data; use --mode single or "
                        "paired, or point --data at the dataset's root")
    folder = scan_image_folder(root)
    width, height = folder.size
    if mode == "paired" or (mode == "auto" and width == 2 * height):
        if width % 2:
            raise GzooError(f"{root}: paired A|B images need an even width, these are {width}x{height}")
        return EvalData(root, "paired", direction, folder, folder)
    return EvalData(root, "single", direction, folder, None)


def target_folders(data: EvalData) -> str:
    """The folders the targets come from, e.g. ``trainB+testB``."""
    if data.targets.root != data.root:
        return data.targets.root.name
    return "+".join(dict.fromkeys(path.relative_to(data.root).parts[0] for path in data.targets.paths))


def quantise(outputs: torch.Tensor) -> torch.Tensor:
    """Generator outputs in [-1, 1] to uint8 as the originals save them: ``(x + 1) / 2 * 255``, truncated."""
    return ((outputs.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)


def save_images(images: torch.Tensor, folder: Path, names: list[str]) -> None:
    """uint8 N x 3 x H x W tensors as PNG files named after their inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names, strict=True):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{Path(name).stem}.png")


def _chunks(items: tuple, size: int) -> Iterator[tuple]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def paired_halves(image: Image.Image, direction: str) -> tuple[Image.Image, Image.Image]:
    """(input, target) of an A|B image: A is the left half; BtoA swaps them."""
    half = image.width // 2
    left, right = image.crop((0, 0, half, image.height)), image.crop((half, 0, 2 * half, image.height))
    return (left, right) if direction == "AtoB" else (right, left)


def _resized(image: Image.Image, height: int, width: int) -> Image.Image:
    return image if image.size == (width, height) else image.resize((width, height), Image.BICUBIC)


def to_unit_range(image: Image.Image) -> torch.Tensor:
    """An RGB image as a float 3 x H x W tensor in [-1, 1] (the originals' ToTensor + Normalize(0.5, 0.5))."""
    return to_uint8_tensor(image).float() / 127.5 - 1
