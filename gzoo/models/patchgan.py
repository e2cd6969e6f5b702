"""PatchGAN discriminators: the one of pix2pix/CycleGAN (``NLayerDiscriminator``), which GAN Compression trains
beside the student: it scores overlapping 70x70 patches (at n_layers 3) as real or generated; and GauGAN's
(SPADE's ``MultiscaleDiscriminator`` of ``SPADENLayerDiscriminator``s, as CAT's ``models/modules/
discriminators.py`` has them), which runs one such network per image scale and returns every layer's output, for
the generator's feature-matching loss."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from gzoo.models.layers import conv_bias, norm_layer

SPADE_NORMS = ("instance", "batch", "none")  # after an optional "spectral" prefix: norm_D's values
SPADE_MAX_WIDTH = 512  # SPADENLayerDiscriminator caps its widths at 512 whatever ndf is


class PatchGanDiscriminator(nn.Sequential):
    """4x4 convs: n_layers stride-2 ones doubling the width (at most 8*ndf), one stride-1, then one to 1 channel."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=bias), make_norm(out),
                       nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        super().__init__(*layers)


def spade_norm_wrapper(norm: str) -> Callable[[int, int, int], nn.Module]:
    """SPADE's ``get_nonspade_norm_layer``: a 4x4 conv (in, out, stride) with spectral norm when ``norm`` starts
    with "spectral", followed by the rest of ``norm`` (instance: no affine; batch: affine) in a Sequential.

    Such a conv has no bias (the norm removes any constant), except with no norm after it. The keys are the
    original's: ``0.weight_orig``, ``0.weight_u``, ``0.weight_v`` under spectral norm; the conv alone, not in a
    Sequential, with no norm after it. (CAT's copy fails on a norm with no "spectral" prefix; SPADE's reads it
    as the norm alone, as here.)"""
    spectral = norm.startswith("spectral")
    after = norm.removeprefix("spectral") or "none"
    if after not in SPADE_NORMS:
        raise ValueError(f"norm_D must be [spectral]{'|'.join(SPADE_NORMS)}, not {norm!r}")

    def wrap(in_channels: int, out_channels: int, stride: int) -> nn.Module:
        conv = nn.Conv2d(in_channels, out_channels, 4, stride=stride, padding=2, bias=after == "none")
        if spectral:
            conv = spectral_norm(conv)  # keys weight_orig / weight_u / weight_v, as the original's checkpoints
        if after == "none":
            return conv
        return nn.Sequential(conv, norm_layer(after)(out_channels))

    return wrap


class SpadePatchDiscriminator(nn.Module):
    """SPADE's ``SPADENLayerDiscriminator``: stages ``model0..model{n_layers}``, each a Sequential, whose outputs
    are all returned (the last one is the patch prediction). 4x4 convs with padding 2; the first has no norm, the
    next n_layers - 1 double the width (at most 512) at stride 2, the last of them at stride 1; then a conv to one
    channel. LeakyReLU 0.2 not in place, so every stage's output stays as it was for feature matching."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, norm: str = "spectralinstance") -> None:
        super().__init__()
        normed_conv = spade_norm_wrapper(norm)
        stages: list[list[nn.Module]] = [[nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]]
        width = ndf
        for n in range(1, n_layers):
            out = min(width * 2, SPADE_MAX_WIDTH)
            stride = 1 if n == n_layers - 1 else 2
            stages.append([normed_conv(width, out, stride), nn.LeakyReLU(0.2)])
            width = out
        stages.append([nn.Conv2d(width, 1, 4, stride=1, padding=2)])
        for n, stage in enumerate(stages):
            self.add_module(f"model{n}", nn.Sequential(*stage))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.children():
            x = stage(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """SPADE's ``MultiscaleDiscriminator``: ``discriminator_0..num_d-1``, the i-th seeing the input downsampled i
    times (3x3 average pooling, stride 2, padding 1 not counted). Returns, per scale, every stage's output."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2,
                 norm: str = "spectralinstance") -> None:
        super().__init__()
        for i in range(num_d):
            self.add_module(f"discriminator_{i}", SpadePatchDiscriminator(input_nc, ndf, n_layers, norm))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        predictions = []
        for i, discriminator in enumerate(self.children()):
            if i > 0:  # the original also pools after the last scale, for nothing
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            predictions.append(discriminator(x))
        return predictions
