"""PSNR and SSIM against scikit-image's implementations, on real photographs."""

import math

import numpy as np
import pytest
import torch
from photos import photo
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gzoo.metrics.fidelity import psnr, ssim


def as_numpy(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_psnr_and_ssim_match_scikit_image_on_real_photos(name):
    reference = photo(96, name)
    torch.manual_seed(0)
    for degraded in (reference + 0.1 * torch.randn_like(reference),
                     torch.nn.functional.avg_pool2d(reference, 3, stride=1, padding=1)):
        degraded = degraded.clamp(-1, 1)
        expected_psnr = peak_signal_noise_ratio(as_numpy(reference), as_numpy(degraded), data_range=2.0)
        expected_ssim = structural_similarity(as_numpy(reference), as_numpy(degraded), data_range=2.0,
                                              channel_axis=2, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False)
        assert psnr(degraded, reference) == pytest.approx(expected_psnr, abs=1e-6)
        assert ssim(degraded, reference) == pytest.approx(expected_ssim, abs=1e-6)
        assert 0 < ssim(degraded, reference) < 1


def test_identical_images_give_infinite_psnr_and_ssim_one():
    image = photo(64)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_batches_average_per_image_scores():
    a, b = photo(64, "astronaut"), photo(64, "chelsea")
    noisy_a, noisy_b = (a * 0.9).clamp(-1, 1), (b * 0.8).clamp(-1, 1)
    batch = psnr(torch.cat([noisy_a, noisy_b]), torch.cat([a, b]))
    assert batch == pytest.approx((psnr(noisy_a, a) + psnr(noisy_b, b)) / 2)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        ssim(photo(64), photo(32))
