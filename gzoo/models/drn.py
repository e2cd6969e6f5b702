"""DRN-D-105 semantic segmentation (Yu et al., "Dilated Residual Networks"), the network whose Cityscapes mIoU
GAN Compression, Fast GAN Compression, OMGD and CAT report for generated street scenes.

Built as fyu/drn builds it (drn.py ``drn_d_105`` = ``DRN(Bottleneck, [1, 1, 3, 4, 23, 3, 1, 1], arch='D')``,
segment.py ``DRNSeg``), so the released checkpoint ``drn-d-105_ms_cityscapes.pth`` loads key for key:
``DRNSeg.base`` is ``nn.Sequential(*list(drn.children())[:-2])``, the DRN without its average pool and fc, so
its keys are ``base.<0..8>...`` for layer0..layer8 (``base.0.0.weight`` is the 7x7 stem conv,
``base.5.22.conv3.weight`` the last bottleneck of layer5), then ``seg.weight``, ``seg.bias`` and ``up.weight``.
"""

import math

import torch
from torch import nn

from gzoo.models.classifiers import Bottleneck
from gzoo.models.registry import register_model

# Output widths of layer0..layer8 (DRN's ``channels``); layer3..layer6 are bottleneck stages of this width x 4.
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
DRN_D_105_DEPTHS = (1, 1, 3, 4, 23, 3, 1, 1)


def _conv_layers(in_channels: int, channels: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """DRN-D's plain stages (``_make_conv_layers``): 3x3 conv, BN, ReLU, the first conv carrying the stride."""
    modules: list[nn.Module] = []
    for index in range(convs):
        modules += [nn.Conv2d(in_channels, channels, 3, stride if index == 0 else 1, dilation, dilation, bias=False),
                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        in_channels = channels
    return nn.Sequential(*modules)


def _bottlenecks(in_channels: int, width: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """DRN's ``_make_layer`` with bottlenecks: only the 3x3 conv is dilated, the first block also strides.

    DRN's bottleneck dilates its 3x3 conv by ``dilation[1]``, which is the stage's dilation for every block of the
    dilated stages (they use ``new_level=False``), so a plain dilated bottleneck reproduces it.
    """
    layers = []
    for index in range(blocks):
        layers.append(Bottleneck(in_channels, width, stride if index == 0 else 1, dilation))
        in_channels = width * Bottleneck.expansion
    return nn.Sequential(*layers)


def drn_d_trunk(depths: tuple[int, ...] = DRN_D_105_DEPTHS) -> nn.Sequential:
    """DRN-D's layer0..layer8 (output stride 8, ``CHANNELS[-1]`` channels), with DRN's initialisation."""
    c = CHANNELS
    layer0 = nn.Sequential(nn.Conv2d(3, c[0], 7, 1, 3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True))
    trunk = nn.Sequential(
        layer0,
        _conv_layers(c[0], c[0], depths[0]),
        _conv_layers(c[0], c[1], depths[1], stride=2),
        _bottlenecks(c[1], c[2], depths[2], stride=2),
        _bottlenecks(4 * c[2], c[3], depths[3], stride=2),
        _bottlenecks(4 * c[3], c[4], depths[4], dilation=2),
        _bottlenecks(4 * c[4], c[5], depths[5], dilation=4),
        _conv_layers(4 * c[5], c[6], depths[6], dilation=2),
        _conv_layers(c[6], c[7], depths[7]),
    )
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            # DRN's He initialisation over the output fan (only random-weight models see it).
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0, math.sqrt(2 / fan_out))
    return trunk


def bilinear_kernel(size: int) -> torch.Tensor:
    """The size x size bilinear interpolation kernel of DRN's ``fill_up_weights``."""
    factor = math.ceil(size / 2)
    centre = (2 * factor - 1 - factor % 2) / (2 * factor)
    ramp = 1 - (torch.arange(size, dtype=torch.float64) / factor - centre).abs()
    return (ramp[:, None] * ramp[None, :]).float()


class DRNSeg(nn.Module):
    """DRN trunk, 1x1 conv to class scores at 1/8 resolution, fixed bilinear x8 transposed-conv upsampling.

    ``forward`` returns per-pixel log-probabilities N x classes x H x W (the first output of the original's
    ``forward``; its second, the 1/8-resolution scores, serves only training).
    """

    def __init__(self, classes: int = 19) -> None:
        super().__init__()
        self.base = drn_d_trunk(DRN_D_105_DEPTHS)
        self.seg = nn.Conv2d(CHANNELS[-1], classes, 1, bias=True)
        nn.init.normal_(self.seg.weight, 0, math.sqrt(2 / classes))
        nn.init.zeros_(self.seg.bias)
        self.up = nn.ConvTranspose2d(classes, classes, 16, stride=8, padding=4, groups=classes, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_kernel(16).expand_as(self.up.weight))
        self.up.weight.requires_grad = False  # fixed, as in the original
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.up(self.seg(self.base(x))))


@register_model
def drn_d_105_seg(classes: int = 19) -> DRNSeg:
    """DRN-D-105 segmenter (Cityscapes: 19 train-id classes), random weights; load theirs with load_segmenter."""
    if classes < 1:
        raise ValueError(f"classes must be at least 1, not {classes}")
    return DRNSeg(classes)
