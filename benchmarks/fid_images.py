"""Real images for the FID benchmarks: 299x299 crops of scikit-image's bundled photographs, on a grid."""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "chelsea", "retina", "immunohistochemistry",
          "colorwheel", "logo", "brick", "grass", "gravel", "camera", "moon", "coins")


def write_crops(folder: Path, count: int, offset: int = 0, size: int = 299, steps: int = 6) -> Path:
    """``count`` distinct crops (the ``offset``-th onwards) of ``steps`` x ``steps`` overlapping windows per photo,
    each photo resized up where needed, as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    crops = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        if min(image.size) < 2 * size:
            image = image.resize((max(2 * size, image.width), max(2 * size, image.height)), Image.BICUBIC)
        array = np.asarray(image)
        for row in range(steps):
            for column in range(steps):
                top = (array.shape[0] - size) * row // (steps - 1)
                left = (array.shape[1] - size) * column // (steps - 1)
                crops.append(array[top:top + size, left:left + size])
    if offset + count > len(crops):
        raise SystemExit(f"only {len(crops)} distinct crops available")
    for index, crop in enumerate(crops[offset:offset + count]):
        Image.fromarray(crop).save(folder / f"{index:04d}.png")
    return folder
