"""ImageNet ResNet classifiers with torchvision's layout, so torchvision checkpoints load by name.

They are the networks Bit-Goes-Down quantises. Written here rather than imported from torchvision,
whose import alone costs seconds on every leaderboard that measures them.
"""

from torch import Tensor, nn

from gzoo.models.registry import register_model


class _Block(nn.Module):
    """A residual block: ``relu(residual(x) + shortcut(x))``; subclasses define the residual branch."""

    expansion = 1
    downsample: nn.Module | None

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class BasicBlock(_Block):
    """Two 3x3 convs (ResNet-18/34)."""

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def residual(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's v1.5 does), 1x1 expand (ResNet-50).

    ``dilation`` dilates the 3x3 conv (padded to keep the size), as DRN's bottlenecks do (gzoo.models.drn).
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def residual(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    def __init__(self, block: type[_Block], depths: tuple[int, int, int, int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        for stage, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True), start=1):
            blocks = []
            for index in range(depth):
                blocks.append(block(channels, width, stride=2 if index == 0 and stage > 1 else 1))
                channels = width * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model(kind="classifier")
def resnet18(num_classes: int = 1000) -> nn.Module:
    """ResNet-18 (random weights; zoo entries load theirs)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


@register_model(kind="classifier")
def resnet50(num_classes: int = 1000) -> nn.Module:
    """ResNet-50 (random weights; zoo entries load theirs)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)
