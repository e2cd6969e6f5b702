"""CycleGAN's training step (Zhu et al., ICCV 2017, ``models/cycle_gan_model.py``), for the methods that train a
CycleGAN pair: CAT's teacher stage on unpaired data and OMGD's CycleGAN setting.

Two generators (A -> B and B -> A), two discriminators (D_A judges B images, D_B judges A images) and two image
pools. One step is two updates, as ``optimize_parameters``: both generators by GAN + cycle + identity L1 with the
discriminators frozen, then both discriminators, real against a pooled fake of the same forward pass.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gzoo.compress.engine import StepResult, broadcast_list, frozen, gather_batch, own_share
from gzoo.compress.losses import gan_loss

FILL, KEEP = -2, -1  # an ImagePool's draws besides the index of a stored image to swap with


class ImagePool(nn.Module):
    """CycleGAN's history of generated images: once full, each new image is, with probability 1/2, swapped for a
    random stored one that the discriminator sees instead. Kept in buffers, so a checkpoint holds it and a
    resumed run draws what an uninterrupted one does (the draws come from the step's own random stream).

    In a torchrun job the pool is the global batch's, as one process's is: every process queries it with the
    whole global batch and the first process's draws, so all hold the same pool (the checkpoint's, written by the
    first), and each shows its discriminator its own share."""

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def _draws(self, n: int, rng: random.Random) -> list[int]:
        """Per image: FILL (stored while the pool fills), KEEP (shown as it is) or the stored image it swaps with."""
        count, draws = int(self.count), []
        for _ in range(n):
            if count < self.size:
                draws.append(FILL)
                count += 1
            else:
                draws.append(rng.randint(0, self.size - 1) if rng.uniform(0, 1) > 0.5 else KEEP)
        return draws

    def query(self, images: torch.Tensor, rng: random.Random) -> torch.Tensor:
        if self.size == 0:
            return images.detach()  # the discriminators' update must not reach the generators' freed graph
        everyone = gather_batch(images.detach())
        shown = []
        for image, draw in zip(everyone, broadcast_list(self._draws(len(everyone), rng), images.device), strict=True):
            if draw == FILL:
                self.images[int(self.count)] = image
                self.count += 1
            elif draw != KEEP:
                stored = self.images[draw].clone()
                self.images[draw] = image
                image = stored
            shown.append(image)
        return own_share(torch.stack(shown))


@dataclass
class CycleGan:
    """The pair's modules and loss weights. The identity terms are weighed lambda_cycle * lambda_identity, as
    the original weighs them (lambda_A = lambda_B = lambda_cycle)."""

    forward: nn.Module  # G_A: A -> B
    backward: nn.Module  # G_B: B -> A
    disc_a: nn.Module  # D_A: real B against G_A's outputs
    disc_b: nn.Module  # D_B: real A against G_B's outputs
    pool_a: ImagePool  # G_B's outputs, shown to D_B
    pool_b: ImagePool  # G_A's outputs, shown to D_A
    gan_mode: str = "lsgan"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5

    def updates(self, real_a: torch.Tensor, real_b: torch.Tensor, rng: random.Random) -> Iterator[StepResult]:
        """The generators' update (objective "G"), then the discriminators' ("D"), for the engine to apply in
        order; ``rng`` draws the pools' swaps."""
        mode, lambda_cycle, lambda_idt = self.gan_mode, self.lambda_cycle, self.lambda_identity
        fake_b, fake_a = self.forward(real_a), self.backward(real_b)
        rec_a, rec_b = self.backward(fake_b), self.forward(fake_a)
        with frozen(self.disc_a), frozen(self.disc_b):
            terms = {"G_A": gan_loss(mode, self.disc_a(fake_b), True, False),
                     "G_B": gan_loss(mode, self.disc_b(fake_a), True, False),
                     "G_cycle_A": lambda_cycle * F.l1_loss(rec_a, real_a),
                     "G_cycle_B": lambda_cycle * F.l1_loss(rec_b, real_b)}
            if lambda_idt > 0:
                terms["G_idt_A"] = lambda_cycle * lambda_idt * F.l1_loss(self.forward(real_b), real_b)
                terms["G_idt_B"] = lambda_cycle * lambda_idt * F.l1_loss(self.backward(real_a), real_a)
        yield {"G": sum(terms.values())}, terms
        shown_b, shown_a = self.pool_b.query(fake_b, rng), self.pool_a.query(fake_a, rng)
        loss_a = 0.5 * (gan_loss(mode, self.disc_a(real_b), True) + gan_loss(mode, self.disc_a(shown_b), False))
        loss_b = 0.5 * (gan_loss(mode, self.disc_b(real_a), True) + gan_loss(mode, self.disc_b(shown_a), False))
        yield {"D": loss_a + loss_b}, {"D_A": loss_a, "D_B": loss_b}
