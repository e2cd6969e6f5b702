"""A folder of images: which files are readable images, their common size, batches of uint8 tensors, a content hash.

Files that are not images (or whose header cannot be read) are skipped and counted, never fatal on their own;
a folder with no readable image left, or with images of different sizes, is refused with one clear message.
Scanning and hashing a folder imports no torch (comparing cached features needs none); reading batches does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from gzoo.errors import GzooError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    paths: tuple[Path, ...]  # readable images, in sorted order
    size: tuple[int, int]  # (width, height), shared by every image
    skipped: tuple[Path, ...]  # files that are not readable images

    def __len__(self) -> int:
        return len(self.paths)

    def content_hash(self) -> str:
        """sha256 over every image's relative path and bytes: a changed, added or removed image changes it."""
        return self._content_hash

    @cached_property
    def _content_hash(self) -> str:  # reading every file is costly: once per folder object
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            with open(path, "rb") as file:
                digest.update(hashlib.file_digest(file, "sha256").digest())
        return digest.hexdigest()

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """uint8 N x 3 x H x W batches, in order."""
        import torch

        for start in range(0, len(self.paths), batch_size):
            yield torch.stack([read_image(path) for path in self.paths[start:start + batch_size]])


def read_image(path: Path) -> torch.Tensor:
    """One image as a uint8 3 x H x W RGB tensor."""
    return to_uint8_tensor(open_rgb(path))


def open_rgb(path: Path) -> Image.Image:
    """One image, decoded and converted to RGB."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise GzooError(f"cannot decode {path}: {err}; remove or replace the file") from None


def to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 3 x H x W tensor."""
    import torch

    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


class ImageCounter:
    """Turns "n more images done" into a (done, total, label) progress callback."""

    def __init__(self, total: int, progress: Callable[[int, int, str], None] | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def advance(self, images: int, label: str = "") -> None:
        self.done += images
        if self.progress:
            self.progress(self.done, self.total, label)


def scan_image_folder(root: str | Path, same_size: bool = True) -> ImageFolder:
    """The readable images under ``root`` (recursively, hidden files ignored), all of one size unless
    ``same_size`` is False (then ``size`` is the first image's)."""
    root = Path(root)
    if not root.exists():
        raise GzooError(f"{root}: no such folder; give a folder of images")
    if not root.is_dir():
        raise GzooError(f"{root}: not a folder; give a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    readable, skipped, sizes = [], [], {}
    for path in files:
        try:
            with Image.open(path) as image:  # reads the header only
                sizes[path] = image.size
            readable.append(path)
        except (OSError, UnidentifiedImageError):
            skipped.append(path)
    if not readable:
        what = f"none of its {len(files)} files is a readable image" if files else "it is empty"
        raise GzooError(f"{root}: {what}; give a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    first = readable[0]
    for path in readable[1:] if same_size else ():
        if sizes[path] != sizes[first]:
            raise GzooError(f"{root}: images of different sizes ({first.name} {_wxh(sizes[first])}, {path.name} "
                            f"{_wxh(sizes[path])}); resize them to one size first")
    return ImageFolder(root, tuple(readable), sizes[first], tuple(skipped))


def merge_image_folders(root: Path, folders: list[ImageFolder]) -> ImageFolder:
    """Folders under ``root`` as one (paths relative to ``root`` in the content hash); all of one image size. One
    folder is itself, its content hash unchanged."""
    first = folders[0]
    if len(folders) == 1:
        return first
    for folder in folders[1:]:
        if folder.size != first.size:
            raise GzooError(f"{first.root} has {_wxh(first.size)} images, {folder.root} {_wxh(folder.size)}; resize "
                            "them to one size first")
    return ImageFolder(root, tuple(p for f in folders for p in f.paths), first.size,
                       tuple(p for f in folders for p in f.skipped))


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
