"""Fidelity to a teacher: PSNR and SSIM of a student's outputs against its teacher's on the same inputs.

The metric a user without ground truth has. Images are (B, C, H, W) tensors; the default ``data_range``
of 2 suits generator outputs in [-1, 1]. Both are averaged over the images of a batch.
"""

import math

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5  # Wang et al. (2004): an 11x11 Gaussian window of sigma 1.5, K1 0.01, K2 0.03
SSIM_RADIUS = 5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check(output: torch.Tensor, reference: torch.Tensor) -> None:
    if output.shape != reference.shape or output.dim() != 4:
        raise ValueError(f"PSNR/SSIM compare (B, C, H, W) images of one shape, not {tuple(output.shape)} "
                         f"and {tuple(reference.shape)}")


def psnr(output: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean PSNR in dB over the batch; ``inf`` when every image is identical to its reference."""
    _check(output, reference)
    mse = (output.double() - reference.double()).pow(2).flatten(1).mean(1)
    values = [math.inf if m == 0 else 10 * math.log10(data_range**2 / m) for m in mse.tolist()]
    return sum(values) / len(values)


def _gaussian_window(channels: int) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()


def ssim(output: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> float:
    """Mean SSIM over the batch: Gaussian-weighted local statistics, averaged over channels and the pixels
    the whole window covers (as scikit-image's ``structural_similarity`` with ``gaussian_weights``)."""
    _check(output, reference)
    x, y = output.double(), reference.double()
    window = _gaussian_window(x.size(1))

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=x.size(1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1).mean().item()
