"""Real photographs as model inputs: scikit-image's bundled colour photos, or a folder of images.

Both come out as float N x 3 x H x W tensors resized to the model's input (bicubic, no crop) and scaled to the
model's value range, the way every exporter check and int8 calibration in gzoo feeds a model real pixels.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gzoo.data.images import open_rgb, scan_image_folder, to_uint8_tensor
from gzoo.errors import GzooError

# scikit-image's colour photographs (stereo_motorcycle: its left view), in the order they are handed out.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field",
                  "immunohistochemistry", "retina")


def skimage_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photographs as an RGB image."""
    try:
        from skimage import data
    except ImportError:
        raise GzooError("real test photos come from scikit-image: pip install scikit-image") from None
    if name not in SKIMAGE_PHOTOS:
        raise GzooError(f"unknown scikit-image photo '{name}'; choose one of {', '.join(SKIMAGE_PHOTOS)}")
    array = getattr(data, name)()
    array = array[0] if isinstance(array, tuple) else array  # stereo_motorcycle: (left, right, disparity)
    return Image.fromarray(np.asarray(array)).convert("RGB")


def to_model_input(image: Image.Image, height: int, width: int, value_range: tuple[float, float]) -> torch.Tensor:
    """An RGB image resized to height x width (bicubic) as a 3 x H x W float tensor spanning ``value_range``."""
    if image.size != (width, height):
        image = image.resize((width, height), Image.BICUBIC)
    low, high = value_range
    return to_uint8_tensor(image).float() / 255 * (high - low) + low


def skimage_inputs(names: Sequence[str], height: int, width: int, value_range: tuple[float, float]) -> torch.Tensor:
    """The named scikit-image photos as one N x 3 x H x W batch of model inputs."""
    return torch.stack([to_model_input(skimage_photo(n), height, width, value_range) for n in names])


def folder_inputs(folder: str | Path, height: int, width: int, value_range: tuple[float, float],
                  limit: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """The images of a folder (any sizes; the first ``limit`` by name) as model inputs, and their file names."""
    images = scan_image_folder(folder, same_size=False)
    paths = images.paths[:limit]
    if not paths:
        raise GzooError(f"{folder}: no images to read; give a folder of real images")
    return (torch.stack([to_model_input(open_rgb(p), height, width, value_range) for p in paths]),
            [p.relative_to(images.root).as_posix() for p in paths])
