"""The pix2pix U-Net generator (``unet_256`` at 8 downsamplings), built innermost-out as the original.

Parameter names follow pix2pix (``model.model.1.model.3...``) so its checkpoints load key for key.
"""

from collections.abc import Callable

import torch
from torch import nn

from gzoo.models.layers import check_dropout, conv_bias, norm_layer
from gzoo.models.registry import register_model

# An optional maker of extra blocks at a given width (OMGD's deep teacher puts two after every down
# conv and two after every up conv); None for the plain U-Net.
ExtraBlock = Callable[[int], nn.Module] | None


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: [down conv, submodule, up conv] with the input concatenated to its output."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", dropout: float = 0.0, extra: ExtraBlock = None) -> None:
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        extras = 2 if extra is not None else 0

        if outermost:
            up_conv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, kernel_size=4, stride=2, padding=1)
            down = [down_conv] + [extra(inner_nc) for _ in range(extras)]
            up = [extra(2 * inner_nc) for _ in range(extras)] + [nn.ReLU(True), up_conv, nn.Tanh()]
            layers = down + [submodule] + up
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, make_norm(outer_nc)]
        else:
            up_conv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            down = [nn.LeakyReLU(0.2, True), down_conv, make_norm(inner_nc)]
            down += [extra(inner_nc) for _ in range(extras)]
            up = [nn.ReLU(True), up_conv, make_norm(outer_nc)] + [extra(outer_nc) for _ in range(extras)]
            layers = down + [submodule] + up + ([nn.Dropout(dropout)] if dropout > 0 else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: ``num_downs`` stride-2 levels, widths ngf * (1, 2, 4, 8, 8, ...)."""

    def __init__(self, ngf: int = 64, num_downs: int = 8, norm: str = "batch", dropout: float = 0.0,
                 input_nc: int = 3, output_nc: int = 3, extra: ExtraBlock = None) -> None:
        super().__init__()
        check_dropout(dropout)
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5, not {num_downs}")
        level = dict(norm=norm, extra=extra)
        block = UnetSkipConnectionBlock(8 * ngf, 8 * ngf, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(8 * ngf, 8 * ngf, submodule=block, dropout=dropout, **level)
        for outer in (4 * ngf, 2 * ngf, ngf):
            block = UnetSkipConnectionBlock(outer, 2 * outer, submodule=block, **level)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             **level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model
def unet_generator(ngf: int = 64, num_downs: int = 8, norm: str = "batch", dropout: float = 0.0,
                   input_nc: int = 3, output_nc: int = 3) -> UnetGenerator:
    """pix2pix U-Net generator (``unet_256`` at num_downs 8, for 256x256 inputs)."""
    return UnetGenerator(ngf, num_downs, norm, dropout, input_nc, output_nc)
