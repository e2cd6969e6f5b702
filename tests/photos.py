"""Real photographs for tests: scikit-image's bundled images as model inputs."""

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
