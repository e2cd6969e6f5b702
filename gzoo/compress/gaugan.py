"""GauGAN's training step (Park et al., CVPR 2019, SPADE), as CAT trains its inception SPADE teacher and distils
its GauGAN students (``models/modules/spade_modules/spade_model_modules.py`` and
``base_spade_distiller_modules.py``): label maps to photos, no L1 to the photo.

The discriminator (``gzoo.models.patchgan.MultiscaleDiscriminator``) sees the label map beside the image. The
generator's objective is lambda_gan * GAN + lambda_feat * feature matching (its intermediate outputs on the
generated image against those on the photo) + lambda_vgg * VGG19 loss (``gzoo.compress.perceptual.vgg_loss``);
the discriminator's is GAN on the generated image + GAN on the photo (no 1/2, unlike pix2pix). One step is two
updates, as ``optimize_parameters``: the generator with the discriminator frozen, then the discriminator on an
image the updated generator makes anew without gradient (``compute_D_loss``). Under TTUR (the default) the
generator learns at lr / 2 and the discriminator at 2 lr, both by Adam with betas (0, 0.9).
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gzoo.compress.engine import Optimizer, StepResult, frozen
from gzoo.compress.losses import MultiscalePrediction, feature_matching, multiscale_gan_loss
from gzoo.compress.perceptual import PerceptualNetwork, vgg_loss

TTUR_BETAS = (0.0, 0.9)  # create_optimizers' Adam betas under TTUR, whatever --beta1 / --beta2 say


@dataclass(frozen=True)
class GauGanSettings:
    """What GauGAN adds to a recipe's training settings (lr, betas, gan_mode, lambda_gan, ndf and n_layers_d are
    the shared keys); defaults are the originals'."""

    lambda_feat: float = 10.0  # --lambda_feat: discriminator feature matching
    lambda_vgg: float = 10.0  # --lambda_vgg: the VGG19 loss
    num_d: int = 2  # --num_D: the discriminator's scales
    norm_d: str = "spectralinstance"  # --norm_D: spectral norm on the inner convs, then instance norm
    ttur: bool = True  # not --no_TTUR: G at lr / 2, D at 2 lr, Adam betas (0, 0.9)
    perceptual: str = "vgg19"  # VGGLoss's VGG19; "inception": the offline FID trunk (gzoo.compress.perceptual)


@dataclass
class GauGan:
    """GauGAN's discriminator, feature network and loss weights; the generator's output is given to each term,
    so a distiller adds its own terms to ``generator_terms``."""

    discriminator: nn.Module  # MultiscaleDiscriminator over label channels + 3
    perceptual: PerceptualNetwork | None  # None only with lambda_vgg 0
    gan_mode: str = "hinge"
    lambda_gan: float = 1.0
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0

    def __post_init__(self) -> None:
        if self.perceptual is None and self.lambda_vgg:
            raise ValueError(f"lambda_vgg {self.lambda_vgg} needs a perceptual network")

    def discriminate(self, seg: torch.Tensor, fake: torch.Tensor,
                     real: torch.Tensor) -> tuple[MultiscalePrediction, MultiscalePrediction]:
        """The discriminator's outputs on (label map, generated image) and (label map, photo): both halves in one
        batch, as the original's ``discriminate`` and ``divide_pred`` (one batch-norm statistic, one power
        iteration of the spectral norms per call)."""
        both = torch.cat([torch.cat([seg, fake], dim=1), torch.cat([seg, real], dim=1)], dim=0)
        predictions = self.discriminator(both)
        n = fake.shape[0]
        return [[t[:n] for t in scale] for scale in predictions], [[t[n:] for t in scale] for scale in predictions]

    def generator_terms(self, seg: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """G_gan, G_feat and G_vgg, weighted; no gradient reaches the discriminator's parameters."""
        with frozen(self.discriminator):
            pred_fake, pred_real = self.discriminate(seg, fake, real)
        terms = {"G_gan": self.lambda_gan * multiscale_gan_loss(self.gan_mode, pred_fake, True, False),
                 "G_feat": self.lambda_feat * feature_matching(pred_fake, pred_real)}
        # A zero weight skips the feature network's two passes but keeps the term in the log.
        terms["G_vgg"] = self.lambda_vgg * vgg_loss(self.perceptual, fake, real) if self.lambda_vgg \
            else fake.new_zeros(())
        return terms

    def discriminator_terms(self, seg: torch.Tensor, fake: torch.Tensor,
                            real: torch.Tensor) -> dict[str, torch.Tensor]:
        """D_fake and D_real; no gradient reaches the generator (``fake`` is detached)."""
        pred_fake, pred_real = self.discriminate(seg, fake.detach(), real)
        return {"D_fake": multiscale_gan_loss(self.gan_mode, pred_fake, False),
                "D_real": multiscale_gan_loss(self.gan_mode, pred_real, True)}

    def updates(self, generator: nn.Module, seg: torch.Tensor, real: torch.Tensor,
                more_terms: Callable[[], dict[str, torch.Tensor]] | None = None) -> Iterator[StepResult]:
        """SPADE's step: the generator's update (objective "G"), then the discriminator's ("D") on a new image
        from the updated generator, for the engine to apply in order. ``more_terms``: a distiller's generator
        terms, computed after the generator's forward pass (its feature taps filled)."""
        terms = self.generator_terms(seg, generator(seg), real)
        if more_terms is not None:
            terms |= more_terms()
        yield {"G": sum(terms.values())}, terms
        with torch.no_grad():
            fake = generator(seg)
        terms = self.discriminator_terms(seg, fake, real)
        yield {"D": sum(terms.values())}, terms


def ttur_groups(generator_members: Sequence[str], discriminator_members: Sequence[str], lr: float, ttur: bool = True,
                betas: tuple[float, float] | None = None) -> dict[str, Optimizer]:
    """The original's ``create_optimizers`` as the engine's groups "G" and "D": under TTUR, Adam at lr / 2 and
    2 lr with betas (0, 0.9); otherwise both at ``lr`` with ``betas`` (None: the recipe's)."""
    if ttur:
        return {"G": Optimizer(tuple(generator_members), lr=lr / 2, betas=TTUR_BETAS),
                "D": Optimizer(tuple(discriminator_members), lr=2 * lr, betas=TTUR_BETAS)}
    return {"G": Optimizer(tuple(generator_members), lr=lr, betas=betas),
            "D": Optimizer(tuple(discriminator_members), lr=lr, betas=betas)}
