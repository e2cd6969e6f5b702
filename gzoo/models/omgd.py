"""OMGD's deep teachers (bytedance/OMGD, ``unet_deepest_256`` and ``mobile_deepest_resnet``).

OMGD distils from a wide teacher (the student's family at ngf 64, already in unet.py/resnet.py) and a
deep one: the student's width with extra expansion blocks, so the two teachers reach similar MACs.
"""

import torch
from torch import nn

from gzoo.models.layers import Residual, check_dropout, conv_bias, norm_layer, padding
from gzoo.models.registry import register_model
from gzoo.models.resnet import MobileResnetBlock
from gzoo.models.unet import UnetGenerator


class ExpansionResnetBlock(Residual):
    """[pad 1, 1x1 conv x4, norm, ReLU, 3x3 conv, norm, ReLU, 1x1 conv /4, norm, ReLU, dropout,
    pad 1, 3x3 conv, norm] plus the input.

    As in the original, the first reflection pad comes before the 1x1 expansion, so that conv and the
    following unpadded 3x3 run on the padded map.
    """

    def __init__(self, dim: int, norm: str, dropout: float = 0.0, padding_type: str = "reflect") -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        pad, p = padding(padding_type, 1)
        wide = 4 * dim
        self.conv_block = nn.Sequential(
            *pad, nn.Conv2d(dim, wide, 1, bias=bias), make_norm(wide), nn.ReLU(True),
            nn.Conv2d(wide, wide, 3, padding=p, bias=bias), make_norm(wide), nn.ReLU(True),
            nn.Conv2d(wide, dim, 1, bias=bias), make_norm(dim), nn.ReLU(True),
            nn.Dropout(dropout),
            *padding(padding_type, 1)[0], nn.Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim),
        )


class DeepMobileResnetGenerator(nn.Module):
    """The mobile ResNet generator with an expansion block and a 3x3 conv after each down/up sampling
    and two expansion blocks in the middle of the trunk."""

    def __init__(self, ngf: int = 16, n_blocks: int = 9, norm: str = "instance", dropout: float = 0.0,
                 input_nc: int = 3, output_nc: int = 3, padding_type: str = "reflect") -> None:
        super().__init__()
        check_dropout(dropout)
        make_norm, bias = norm_layer(norm), conv_bias(norm)

        def deepen(width: int) -> list[nn.Module]:
            return [ExpansionResnetBlock(width, norm, dropout, padding_type),
                    nn.Conv2d(width, width, 3, padding=1, bias=bias), make_norm(width), nn.ReLU(True)]

        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), make_norm(ngf),
                                   nn.ReLU(True)]
        for width in (2 * ngf, 4 * ngf):
            layers += [nn.Conv2d(width // 2, width, 3, stride=2, padding=1, bias=bias), make_norm(width),
                       nn.ReLU(True), *deepen(width)]
        trunk = 4 * ngf
        first_half = n_blocks // 2
        layers += [MobileResnetBlock(trunk, trunk, norm, dropout, padding_type) for _ in range(first_half)]
        layers += [ExpansionResnetBlock(trunk, norm, dropout, padding_type) for _ in range(2)]
        layers += [MobileResnetBlock(trunk, trunk, norm, dropout, padding_type)
                   for _ in range(n_blocks - first_half)]
        for width in (2 * ngf, ngf):
            layers += [nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       make_norm(width), nn.ReLU(True), *deepen(width)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model
def omgd_deep_unet_generator(ngf: int = 16, num_downs: int = 8, norm: str = "batch", dropout: float = 0.0,
                             input_nc: int = 3, output_nc: int = 3) -> UnetGenerator:
    """OMGD's deep U-Net teacher: two expansion blocks after every down conv and every up conv."""
    return UnetGenerator(ngf, num_downs, norm, dropout, input_nc, output_nc,
                         extra=lambda width: ExpansionResnetBlock(width, norm))


@register_model
def omgd_deep_mobile_resnet_generator(ngf: int = 16, n_blocks: int = 9, norm: str = "instance",
                                      dropout: float = 0.0, input_nc: int = 3, output_nc: int = 3,
                                      padding_type: str = "reflect") -> DeepMobileResnetGenerator:
    """OMGD's deep mobile-ResNet teacher."""
    return DeepMobileResnetGenerator(ngf, n_blocks, norm, dropout, input_nc, output_nc, padding_type)
