"""The losses the compression methods combine, by name (the names recipes use).

- GAN losses, as the originals' ``GANLoss``: ``lsgan`` (MSE to 1 / 0), ``vanilla`` (BCE with logits),
  ``hinge`` (discriminator: relu(1 - real) + relu(1 + fake); generator: -fake).
- Reconstruction losses: ``l1``, ``l2``, ``smooth_l1``.
- GAN Compression's distillation: MSE between each teacher feature and the student's feature mapped by a
  learnable 1x1 conv, summed over the taps.
- A classifier's distillation (Bit-Goes-Down's ``finetune_centroids``): KL divergence from the teacher's class
  probabilities to the student's, averaged over the batch.
"""

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


def distillation_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                      mappings: Sequence[nn.Module]) -> torch.Tensor:
    """Sum over taps of MSE(mapping(student feature), teacher feature)."""
    return sum(F.mse_loss(mapping(s), t) for s, t, mapping in zip(student, teacher, mappings, strict=True))


def kl_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the classes, batch mean."""
    return F.kl_div(F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits, dim=1), reduction="batchmean")
