"""ImageNet classifiers as torchvision defines them (the networks Bit-Goes-Down quantises)."""

from torch import nn

from gzoo.models.registry import register_model


@register_model
def resnet18(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-18 (random weights; zoo entries load theirs)."""
    import torchvision  # imported here: it costs seconds, and only classifiers need it

    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


@register_model
def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-50 (random weights; zoo entries load theirs)."""
    import torchvision

    return torchvision.models.resnet50(weights=None, num_classes=num_classes)
