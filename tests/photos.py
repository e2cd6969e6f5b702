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
