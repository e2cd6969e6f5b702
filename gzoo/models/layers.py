"""Blocks shared by the generator families: norms, padding, separable and channel-sliceable convs."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "instance_affine", "batch", "none")
NormLayer = Callable[[int], nn.Module]


def norm_layer(kind: str, sliceable: bool = False) -> NormLayer:
    """The pix2pix/CycleGAN norm factory: ``instance`` has no affine parameters and keeps no statistics.

    ``sliceable`` norms (for supernets) accept fewer channels than they were built for.
    """
    instance = SliceableInstanceNorm2d if sliceable else nn.InstanceNorm2d
    if kind == "instance":
        return lambda c: instance(c, affine=False, track_running_stats=False)
    if kind == "instance_affine":
        return lambda c: instance(c, affine=True, track_running_stats=False)
    if sliceable and kind != "none":
        raise ValueError(f"supernets support instance norms only, not {kind!r}")
    if kind == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if kind == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {kind!r}")


def conv_bias(kind: str) -> bool:
    """Convs carry a bias exactly when the norm after them is an instance norm (the originals' rule)."""
    return kind.startswith("instance")


def padding(kind: str, amount: int) -> tuple[list[nn.Module], int]:
    """Explicit padding layers and the conv's own zero padding for a padding type."""
    if kind == "reflect":
        return [nn.ReflectionPad2d(amount)], 0
    if kind == "replicate":
        return [nn.ReplicationPad2d(amount)], 0
    if kind == "zero":
        return [], amount
    raise ValueError(f"padding_type must be reflect, replicate or zero, not {kind!r}")


def check_dropout(rate: float) -> float:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {rate}")
    return rate


class Residual(nn.Module):
    """A block that adds its ``conv_block`` to its input (the residual blocks of every ResNet generator)."""

    conv_block: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class SliceableInstanceNorm2d(nn.InstanceNorm2d):
    """Instance norm over however many channels arrive, using the leading affine parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        weight = None if self.weight is None else self.weight[:channels]
        bias = None if self.bias is None else self.bias[:channels]
        return F.instance_norm(x, weight=weight, bias=bias, eps=self.eps)


class SliceableBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over however many channels arrive, using (and in training updating) the leading statistics.

    GAN Compression's compressed GauGANs keep their batch norms at the full width, so their checkpoints
    carry full-width running statistics; narrower sub-networks use the first channels of them.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.size(1)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average, as nn.BatchNorm2d does
                momentum = 1.0 / float(self.num_batches_tracked)
        mean = None if self.running_mean is None else self.running_mean[:channels]
        var = None if self.running_var is None else self.running_var[:channels]
        weight = None if self.weight is None else self.weight[:channels]
        bias = None if self.bias is None else self.bias[:channels]
        return F.batch_norm(x, mean, var, weight, bias, self.training or mean is None, momentum, self.eps)


class SeparableConv2d(nn.Module):
    """Depthwise kxk conv, instance norm, pointwise 1x1 conv (GAN Compression's ``SeparableConv2d``).

    As in the original, the inner norm is always a parameter-free instance norm and both convs carry a
    bias, whatever norm the generator around it uses.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 sliceable: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels),
            norm_layer("instance", sliceable)(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SuperConv2d(nn.Conv2d):
    """A conv that runs on the first channels of its weights (GAN Compression's supernet layers).

    Input channels follow the incoming tensor; output channels are ``active_out_channels`` (all when
    None), which the supernet sets from its active config.
    """

    active_out_channels: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_channels = self.active_out_channels or self.out_channels
        weight = self.weight[:out_channels, : x.size(1)]
        bias = None if self.bias is None else self.bias[:out_channels]
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class SuperConvTranspose2d(nn.ConvTranspose2d):
    """The transposed-conv counterpart of :class:`SuperConv2d` (weights are [in, out, k, k])."""

    active_out_channels: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_channels = self.active_out_channels or self.out_channels
        weight = self.weight[: x.size(1), :out_channels]
        bias = None if self.bias is None else self.bias[:out_channels]
        return F.conv_transpose2d(x, weight, bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)


class SuperSeparableConv2d(SeparableConv2d):
    """A separable conv: the depthwise part follows the input width, the pointwise part a chosen width."""

    active_out_channels: int | None = None

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding, sliceable=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depthwise, norm, pointwise = self.conv
        width = x.size(1)
        bias = None if depthwise.bias is None else depthwise.bias[:width]
        x = F.conv2d(x, depthwise.weight[:width], bias, depthwise.stride, depthwise.padding,
                     depthwise.dilation, width)
        x = norm(x)
        out_channels = self.active_out_channels or pointwise.out_channels
        bias = None if pointwise.bias is None else pointwise.bias[:out_channels]
        return F.conv2d(x, pointwise.weight[:out_channels, :width], bias)


def copy_sliced_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy into ``target`` the leading slice of each same-named tensor of the wider ``source``.

    This is how a sub-network is cut out of a supernet: channel-sliceable layers always use the first
    channels of their weights, so the standalone model takes exactly those.
    """
    source_tensors = source.state_dict()
    with torch.no_grad():
        for name, tensor in target.state_dict().items():
            if name not in source_tensors:
                raise ValueError(f"{name} has no counterpart in the supernet")
            if tensor.dim() == 0:
                tensor.copy_(source_tensors[name])
                continue
            tensor.copy_(source_tensors[name][tuple(slice(0, n) for n in tensor.shape)])
