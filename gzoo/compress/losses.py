"""The losses the compression methods combine, by name (the names recipes use).

- GAN losses, as the originals' ``GANLoss``: ``lsgan`` (MSE to 1 / 0), ``vanilla`` (BCE with logits),
  ``hinge`` (discriminator: relu(1 - real) + relu(1 + fake); generator: -fake). Over a multi-scale
  discriminator's outputs (GauGAN's), the average over scales of the loss on each scale's prediction.
- GauGAN's feature matching: L1 between the discriminator's intermediate outputs on generated and real images.
- Reconstruction losses: ``l1``, ``l2``, ``smooth_l1``.
- GAN Compression's distillation: MSE between each teacher feature and the student's feature mapped by a
  learnable 1x1 conv, summed over the taps.
- SSIM as a differentiable loss term (OMGD's ``pytorch_ssim``): an 11x11 Gaussian window of sigma 1.5 with zero
  padding, constants (0.01)^2 and (0.03)^2, the map averaged over every pixel and channel.
- CAT's kernel alignment (``kernel_alignment``): how alike two features' sample-by-sample Gram matrices are,
  whatever their widths, so a student of any width is compared with its teacher without a mapping layer.
- A classifier's distillation (Bit-Goes-Down's ``finetune_centroids``): KL divergence from the teacher's class
  probabilities to the student's, averaged over the batch.
"""

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _lsgan(prediction: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
    return F.mse_loss(prediction, torch.full_like(prediction, float(real)))


def _vanilla(prediction: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(prediction, torch.full_like(prediction, float(real)))


def _hinge(prediction: torch.Tensor, real: bool, for_discriminator: bool) -> torch.Tensor:
    if not for_discriminator:
        return -prediction.mean()
    return F.relu(1 - prediction).mean() if real else F.relu(1 + prediction).mean()


GAN_LOSSES: dict[str, Callable[[torch.Tensor, bool, bool], torch.Tensor]] = {
    "lsgan": _lsgan, "vanilla": _vanilla, "hinge": _hinge,
}
RECON_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss, "l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss,
}


def gan_loss(mode: str, prediction: torch.Tensor, real: bool, for_discriminator: bool = True) -> torch.Tensor:
    """The GAN loss of ``mode`` for a discriminator's prediction, as the discriminator or the generator sees it."""
    return GAN_LOSSES[mode](prediction, real, for_discriminator)


MultiscalePrediction = Sequence[Sequence[torch.Tensor]]  # per scale, every stage's output; the last predicts


def multiscale_gan_loss(mode: str, predictions: MultiscalePrediction, real: bool,
                        for_discriminator: bool = True) -> torch.Tensor:
    """``gan_loss`` averaged over a multi-scale discriminator's scales, each judged by its last output (SPADE's
    ``GANLoss`` on a list; the original has this for hinge only, the other modes follow the same rule)."""
    return sum(gan_loss(mode, scale[-1], real, for_discriminator) for scale in predictions) / len(predictions)


def feature_matching(fake: MultiscalePrediction, real: MultiscalePrediction) -> torch.Tensor:
    """GauGAN's ``loss_G_feat`` before lambda_feat: L1 between every intermediate output (all but the
    prediction) on generated and on real images, summed over stages and scales and divided by the scales. The
    real side is a target: no gradient flows through it."""
    total = sum(F.l1_loss(f, r.detach()) for fake_scale, real_scale in zip(fake, real, strict=True)
                for f, r in zip(fake_scale[:-1], real_scale[:-1], strict=True))
    return total / len(fake)


def distillation_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                      mappings: Sequence[nn.Module]) -> torch.Tensor:
    """Sum over taps of MSE(mapping(student feature), teacher feature)."""
    return sum(F.mse_loss(mapping(s), t) for s, t, mapping in zip(student, teacher, mappings, strict=True))


class SsimSide:
    """One image batch's share of SSIM (its local means and means of squares under the window): computed once,
    it serves every comparison with that batch (OMGD's student against each teacher). ``ssim_map`` gives the same
    values with or without it."""

    def __init__(self, x: torch.Tensor, window: int = 11, sigma: float = 1.5) -> None:
        taps = torch.tensor([math.exp(-((i - window // 2) ** 2) / (2 * sigma ** 2)) for i in range(window)],
                            dtype=x.dtype, device=x.device)
        taps = taps / taps.sum()
        self.kernel = (taps[:, None] * taps[None, :]).expand(x.size(1), 1, window, window)
        self.x, self.window, self.sigma = x, window, sigma
        self.mu, self.mean_square = self.blur(x), self.blur(x * x)

    def blur(self, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, self.kernel, padding=self.window // 2, groups=t.size(1))


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, c1: float = 0.01 ** 2,
             c2: float = 0.03 ** 2, x_side: SsimSide | None = None) -> torch.Tensor:
    """The per-pixel SSIM of two N x C x H x W batches, same size as them (the window zero-pads at the border).
    ``x_side``: ``SsimSide(x, window, sigma)`` computed before, so x's own statistics are not computed again."""
    side = x_side if x_side is not None else SsimSide(x, window, sigma)
    if side.x is not x or (side.window, side.sigma) != (window, sigma):
        raise ValueError("x_side must be SsimSide(x) of this x, window and sigma")
    mu_x, mu_y = side.mu, side.blur(y)
    var_x, var_y, cov = side.mean_square - mu_x ** 2, side.blur(y * y) - mu_y ** 2, side.blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, x_side: SsimSide | None = None) -> torch.Tensor:
    """Mean SSIM of two batches, differentiable (OMGD's student term is 1 - ssim); ``x_side`` as ``ssim_map``'s."""
    return ssim_map(x, y, x_side=x_side).mean()


def kernel_alignment(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CAT's ``KA``: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) for features flattened per sample (rows).

    Computed, as the original, through the n x n Gram matrices (n the batch size): <X X^T, Y Y^T> is
    ||Y^T X||_F^2 and ||X X^T||_F is ||X^T X||_F. 1 for identical features and invariant to scaling either;
    always 1 for a batch of one sample, so CAT distils with batches of several. In float32 under autocast.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"kernel alignment needs as many samples on both sides, not {x.shape[0]} and {y.shape[0]}")
    x, y = x.float().flatten(1), y.float().flatten(1)
    gram_x, gram_y = x @ x.T, y @ y.T
    return (gram_x * gram_y).sum() / ((gram_x ** 2).sum() * (gram_y ** 2).sum()).sqrt()


def kl_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the classes, batch mean."""
    return F.kl_div(F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits, dim=1), reduction="batchmean")
