"""Fritz's fast style-transfer network (Johnson et al. with a width multiplier; fritz-style-transfer).

Every conv is bias-free, zero-padded ('same'), and followed by an affine instance norm (the last conv
too); ReLU after all but the last convs of each residual block and the output conv.
"""

import torch
from torch import nn

from gzoo.models.registry import register_model


class ConvBlock(nn.Sequential):
    """kxk conv (no bias, 'same' padding), affine instance norm, optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 relu: bool = True) -> None:
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True),
        ]
        super().__init__(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(ConvBlock(channels, channels, 3), ConvBlock(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FritzStyleNet(nn.Module):
    """9x9 conv, two stride-2 3x3 convs, residual blocks, two (nearest x2 upsample, 3x3 conv), 9x9 conv, tanh."""

    def __init__(self, alpha: float = 1.0, n_blocks: int = 5, small: bool = False) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, not {alpha}")
        # Filter counts before alpha: (32, 64, 128) for the full net, 32 everywhere for the small one.
        stem, down, trunk = (32, 32, 32) if small else (32, 64, 128)
        stem, down, trunk = (max(1, int(alpha * f)) for f in (stem, down, trunk))
        self.encoder = nn.Sequential(ConvBlock(3, stem, 9), ConvBlock(stem, down, 3, stride=2),
                                     ConvBlock(down, trunk, 3, stride=2))
        self.residuals = nn.Sequential(*(ResidualBlock(trunk) for _ in range(n_blocks)))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(trunk, down, 3),
            nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(down, stem, 3),
            ConvBlock(stem, 3, 9, relu=False), nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.residuals(self.encoder(x)))


@register_model
def fritz_style_net(alpha: float = 1.0, n_blocks: int = 5, small: bool = False) -> FritzStyleNet:
    """Fritz style network; ``small`` is Fritz's SmallStyleTransferNetwork (32 filters before alpha)."""
    return FritzStyleNet(alpha, n_blocks, small)
