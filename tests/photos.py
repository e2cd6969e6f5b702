"""Real photographs for tests: scikit-image's bundled images as model inputs."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data


def photo(size: int, name: str = "astronaut") -> torch.Tensor:
    """A scikit-image photograph, resized to size x size, as a contiguous 1x3xHxW tensor in [-1, 1]."""
    image = Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def photo_crops(names: tuple[str, ...], size: int, per_photo: int) -> list[np.ndarray]:
    """``per_photo`` size x size uint8 RGB crops of each named photograph, on a diagonal from its top-left corner."""
    crops = []
    for name in names:
        image = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
        height, width = image.shape[:2]
        for step in range(per_photo):
            top = (height - size) * step // max(per_photo - 1, 1)
            left = (width - size) * step // max(per_photo - 1, 1)
            crops.append(image[top:top + size, left:left + size])
    return crops


def write_images(folder, images: list[np.ndarray], suffix: str = ".png") -> None:
    """Save uint8 HxWx3 arrays as numbered image files in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, array in enumerate(images):
        Image.fromarray(array).save(folder / f"{index:04d}{suffix}")


def write_cityscapes(root: Path, split: str, cities: dict[str, tuple[str, ...]], size: tuple[int, int]) -> None:
    """A Cityscapes tree of scikit-image's photos (width, height = ``size``) under ``root``: for each city, its
    photos as ``leftImg8bit``, label ids 0..31 quantised from their colours as ``gtFine_labelIds``, and 16-bit
    instance maps (as Cityscapes stores them) with two cars and a person among the labels."""
    for city, photos in cities.items():
        for index, name in enumerate(photos):
            stem = f"{city}_{index:06d}_000019"
            for kind in ("gtFine", "leftImg8bit"):
                (root / kind / split / city).mkdir(parents=True, exist_ok=True)
            array = getattr(data, name)()
            array = array[0] if isinstance(array, tuple) else array  # stereo_motorcycle: its left view
            photo = Image.fromarray(np.asarray(array)).convert("RGB").resize(size, Image.BICUBIC)
            rgb = np.asarray(photo).astype(np.int64)
            labels = rgb[..., 0] // 32 + 8 * (rgb[..., 1] // 64)
            instance = labels.copy()  # "stuff" pixels keep their label id, as in Cityscapes
            for k in range(3):  # instances: car 26000 + k and a person 24000, ids as Cityscapes writes them
                top, left = 40 + 90 * k + 10 * index, 60 + 200 * k
                instance[top:top + 70, left:left + 120] = (26000 + k) if k < 2 else 24000
            photo.save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(labels.astype(np.uint8), "L").save(root / "gtFine" / split / city /
                                                                f"{stem}_gtFine_labelIds.png")
            Image.fromarray(instance.astype(np.uint16)).save(root / "gtFine" / split / city /
                                                             f"{stem}_gtFine_instanceIds.png")
