"""The PatchGAN discriminator of pix2pix/CycleGAN (``NLayerDiscriminator``), which GAN Compression trains
beside the student: it scores overlapping 70x70 patches (at n_layers 3) as real or generated."""

from torch import nn

from gzoo.models.layers import conv_bias, norm_layer


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
