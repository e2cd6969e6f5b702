"""The ResNet-9 generator family of CycleGAN/pix2pix and GAN Compression.

All four variants share one skeleton (layer indices and parameter names as in GAN Compression's
``model`` Sequential, so its checkpoints map key for key):

    reflect-pad 3, 7x7 conv, norm, ReLU                      stem
    two 3x3 stride-2 convs, each with norm and ReLU          downsampling
    n residual blocks                                        trunk
    two 3x3 stride-2 transposed convs, norm, ReLU            upsampling
    reflect-pad 3, 7x7 conv to RGB, tanh                     head

- ``resnet_generator``: plain residual blocks (two 3x3 convs).
- ``mobile_resnet_generator``: each residual 3x3 conv replaced by a separable conv.
- ``sub_mobile_resnet_generator``: the mobile generator with widths from an 8-number config.
- ``super_mobile_resnet_generator``: the mobile generator whose convs run on the first channels of
  shared weights; ``set_config`` picks a sub-network, ``extract_subnet`` cuts it out.
"""

from dataclasses import dataclass

import torch
from torch import nn

from gzoo.models.layers import (
    Residual,
    SeparableConv2d,
    SuperConv2d,
    SuperConvTranspose2d,
    SuperSeparableConv2d,
    check_dropout,
    conv_bias,
    copy_sliced_weights,
    norm_layer,
    padding,
)
from gzoo.models.registry import register_model

N_DOWNSAMPLING = 2


@dataclass(frozen=True)
class ResnetWidths:
    """Channel widths of every layer of the skeleton."""

    stem: int
    down: tuple[int, int]
    inner: tuple[int, ...]  # one inner width per residual block; the trunk width is down[-1]
    up: tuple[int, int]

    @classmethod
    def uniform(cls, ngf: int, n_blocks: int) -> "ResnetWidths":
        return cls(ngf, (2 * ngf, 4 * ngf), (4 * ngf,) * n_blocks, (2 * ngf, ngf))

    @classmethod
    def from_config(cls, config: str | list[int], n_blocks: int = 9) -> "ResnetWidths":
        """Widths of GAN Compression's sub-mobile config ``c0_c1_..._c7``.

        Stem c0, downsampling 2*c1 and 4*c2 (the trunk), inner widths 4*c3 / 4*c4 / 4*c5 for each third
        of the blocks, upsampling 2*c6 and c7.
        """
        c = parse_config(config)
        inner = tuple(4 * c[3 + min(i * 3 // n_blocks, 2)] for i in range(n_blocks))
        return cls(c[0], (2 * c[1], 4 * c[2]), inner, (2 * c[6], c[7]))


def parse_config(config: str | list[int]) -> list[int]:
    """``"16_16_32_16_32_32_16_16"`` -> eight positive ints."""
    try:
        values = [int(v) for v in config.split("_")] if isinstance(config, str) else [int(v) for v in config]
    except ValueError:
        values = []
    if len(values) != 8 or min(values) <= 0:
        raise ValueError(f"config must be 8 positive integers joined by '_' like 16_16_32_16_32_32_16_16, "
                         f"not {config!r}")
    return values


class ResnetBlock(Residual):
    """[pad, 3x3 conv, norm, ReLU, dropout, pad, 3x3 conv, norm] plus the input."""

    def __init__(self, dim: int, norm: str, dropout: float, padding_type: str) -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        pad, p = padding(padding_type, 1)
        self.conv_block = nn.Sequential(
            *pad, nn.Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim), nn.ReLU(True),
            nn.Dropout(dropout),
            *padding(padding_type, 1)[0], nn.Conv2d(dim, dim, 3, padding=p, bias=bias), make_norm(dim),
        )


class MobileResnetBlock(Residual):
    """The residual block with separable convs: dim -> inner -> dim."""

    def __init__(self, dim: int, inner: int, norm: str, dropout: float, padding_type: str,
                 separable: type[SeparableConv2d] = SeparableConv2d) -> None:
        super().__init__()
        make_norm = norm_layer(norm, sliceable=separable is SuperSeparableConv2d)
        pad, p = padding(padding_type, 1)
        self.conv_block = nn.Sequential(
            *pad, separable(dim, inner, 3, padding=p), make_norm(inner), nn.ReLU(True),
            nn.Dropout(dropout),
            *padding(padding_type, 1)[0], separable(inner, dim, 3, padding=p), make_norm(dim),
        )


class ResnetGenerator(nn.Module):
    """The ResNet skeleton around a choice of residual block (see the module docstring)."""

    def __init__(self, widths: ResnetWidths, input_nc: int = 3, output_nc: int = 3, norm: str = "instance",
                 dropout: float = 0.0, padding_type: str = "reflect", block: str = "resnet",
                 super_layers: bool = False, clamp_input: bool = True) -> None:
        super().__init__()
        check_dropout(dropout)
        make_norm, bias = norm_layer(norm, sliceable=super_layers), conv_bias(norm)
        conv = SuperConv2d if super_layers else nn.Conv2d
        conv_t = SuperConvTranspose2d if super_layers else nn.ConvTranspose2d
        separable = SuperSeparableConv2d if super_layers else SeparableConv2d
        self.widths, self.clamp_input = widths, clamp_input
        self.options = dict(input_nc=input_nc, output_nc=output_nc, norm=norm, dropout=dropout,
                            padding_type=padding_type)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), conv(input_nc, widths.stem, 7, bias=bias), make_norm(widths.stem), nn.ReLU(True)
        ]
        width = widths.stem
        for out in widths.down:
            layers += [conv(width, out, 3, stride=2, padding=1, bias=bias), make_norm(out), nn.ReLU(True)]
            width = out
        for inner in widths.inner:
            if block == "resnet":
                layers.append(ResnetBlock(width, norm, dropout, padding_type))
            else:
                layers.append(MobileResnetBlock(width, inner, norm, dropout, padding_type, separable))
        for out in widths.up:
            layers += [conv_t(width, out, 3, stride=2, padding=1, output_padding=1, bias=bias), make_norm(out),
                       nn.ReLU(True)]
            width = out
        layers += [nn.ReflectionPad2d(3), conv(width, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GAN Compression's plain, sub-mobile and super-mobile generators clamp the input to the image range
        # before the stem; its and OMGD's MobileResnetGenerator do not (the clamp is commented out there).
        return self.model(x.clamp(-1, 1) if self.clamp_input else x)


class SuperMobileResnetGenerator(ResnetGenerator):
    """A once-for-all supernet: every sub-mobile config up to ``ngf`` runs on its shared weights."""

    def __init__(self, ngf: int, n_blocks: int, **kwargs) -> None:
        super().__init__(ResnetWidths.uniform(ngf, n_blocks), block="mobile", super_layers=True, **kwargs)
        self.ngf, self.n_blocks = ngf, n_blocks
        self.active_config: str | None = None

    def set_config(self, config: str | list[int] | None) -> None:
        """Make the forward pass run sub-network ``config`` (None: the whole supernet)."""
        if config is None:
            widths = self.widths
        else:
            values = parse_config(config)
            if max(values) > self.ngf:
                raise ValueError(f"config {config!r} is wider than this supernet (ngf {self.ngf})")
            widths = ResnetWidths.from_config(values, self.n_blocks)
        # Each sliceable layer's output width, in the order they appear in the model.
        outs = [widths.stem, *widths.down]
        for inner in widths.inner:
            outs += [inner, widths.down[-1]]
        outs += [*widths.up, None]
        sliceable = [m for m in self.model.modules()
                     if isinstance(m, SuperConv2d | SuperConvTranspose2d | SuperSeparableConv2d)]
        for module, out in zip(sliceable, outs, strict=True):
            module.active_out_channels = out
        self.active_config = None if config is None else "_".join(map(str, parse_config(config)))

    def extract_subnet(self, config: str) -> ResnetGenerator:
        """A standalone sub-mobile generator with this supernet's weights for ``config``."""
        subnet = ResnetGenerator(ResnetWidths.from_config(config, self.n_blocks), block="mobile", **self.options)
        copy_sliced_weights(self, subnet)
        return subnet.train(self.training)


@register_model
def resnet_generator(ngf: int = 64, n_blocks: int = 9, norm: str = "instance", dropout: float = 0.0,
                     input_nc: int = 3, output_nc: int = 3, padding_type: str = "reflect") -> ResnetGenerator:
    """CycleGAN/pix2pix ResNet generator (ResNet-9 at n_blocks 9)."""
    return ResnetGenerator(ResnetWidths.uniform(ngf, n_blocks), input_nc, output_nc, norm, dropout, padding_type)


@register_model
def mobile_resnet_generator(ngf: int = 64, n_blocks: int = 9, norm: str = "instance", dropout: float = 0.0,
                            input_nc: int = 3, output_nc: int = 3,
                            padding_type: str = "reflect") -> ResnetGenerator:
    """GAN Compression's (and OMGD's) mobile ResNet generator: residual convs made separable, input not clamped."""
    return ResnetGenerator(ResnetWidths.uniform(ngf, n_blocks), input_nc, output_nc, norm, dropout, padding_type,
                           block="mobile", clamp_input=False)


@register_model
def sub_mobile_resnet_generator(config: str = "16_16_32_16_32_32_16_16", n_blocks: int = 9, norm: str = "instance",
                                dropout: float = 0.0, input_nc: int = 3, output_nc: int = 3,
                                padding_type: str = "reflect") -> ResnetGenerator:
    """A compressed mobile ResNet generator with the widths of an 8-number config string."""
    return ResnetGenerator(ResnetWidths.from_config(config, n_blocks), input_nc, output_nc, norm, dropout,
                           padding_type, block="mobile")


@register_model
def super_mobile_resnet_generator(ngf: int = 64, n_blocks: int = 9, norm: str = "instance", dropout: float = 0.0,
                                  input_nc: int = 3, output_nc: int = 3,
                                  padding_type: str = "reflect") -> SuperMobileResnetGenerator:
    """The once-for-all mobile ResNet supernet (channel-sliceable, shared weights)."""
    return SuperMobileResnetGenerator(ngf, n_blocks, input_nc=input_nc, output_nc=output_nc, norm=norm,
                                      dropout=dropout, padding_type=padding_type)
