"""Starting a student from its teacher: the originals' initialisation, GAN Compression's largest-L1 channel
transfer, and residual blocks that start as the identity. For any method whose student shares its teacher's
skeleton."""

import torch
from torch import nn

from gzoo.errors import GzooError
from gzoo.models.layers import Residual
from gzoo.models.resnet import ResnetGenerator


def init_normal(module: nn.Module, instance_norms: bool = True, xavier: bool = False) -> nn.Module:
    """The originals' ``init_net``: conv weights N(0, 0.02), biases 0, norm scales N(1, 0.02).

    ``instance_norms`` False leaves instance norms as they are, as the originals' ``init_weights`` does (it
    matches class names containing ``BatchNorm2d``): CAT's re-initialised student keeps the teacher's
    surviving instance-norm scales that way. ``xavier``: conv weights Xavier-normal with gain 0.02 instead
    (``--init_type xavier``, the GauGAN models' default)."""
    norms = nn.BatchNorm2d | nn.InstanceNorm2d if instance_norms else nn.BatchNorm2d
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if xavier:
                nn.init.xavier_normal_(layer.weight, gain=0.02)
            else:
                nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, norms) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return module


def transfer_largest_l1(teacher: ResnetGenerator, student: ResnetGenerator) -> list[str]:
    """Initialise ``student`` from a wider ``teacher`` of the same skeleton: each conv keeps the output channels
    whose filters have the largest L1 norm (over the input channels the previous layer kept), GAN Compression's
    pre-distillation. Layers of different kinds (a plain residual block of the teacher against a separable one of
    the student) keep their initialisation. Returns the names of the layers copied."""
    if len(teacher.model) != len(student.model):
        raise GzooError(f"teacher and student differ in depth ({len(teacher.model)} and {len(student.model)} "
                        "layers); give the student the teacher's number of residual blocks")
    copied = []
    kept = torch.arange(teacher.options["input_nc"])
    with torch.no_grad():
        for index, (source, target) in enumerate(zip(teacher.model, student.model, strict=True)):
            if type(source) is not type(target) and not _same_kind(source, target):
                continue
            if isinstance(source, nn.ConvTranspose2d):
                kept = _copy_conv(source.weight.transpose(0, 1), source.bias, target, kept, transposed=True)
            elif isinstance(source, nn.Conv2d):
                kept = _copy_conv(source.weight, source.bias, target, kept)
            elif hasattr(source, "conv_block"):
                if not _copy_block(source, target, kept):
                    continue
            elif getattr(source, "weight", None) is not None and getattr(target, "weight", None) is not None:
                target.weight.copy_(source.weight[kept])
                target.bias.copy_(source.bias[kept])
            else:
                continue
            copied.append(f"model.{index}")
    return copied


def start_as_identity(student: ResnetGenerator, copied: list[str]) -> list[str]:
    """Make the residual blocks the transfer could not copy start as the identity, by zeroing the scale of
    their last (affine) norm, so the student begins as the teacher's copied stem, downsampling and upsampling
    rather than with random noise added to its trunk (the zero-initialised residuals of Goyal et al., 2017).
    GAN Compression's own teacher is a mobile network whose blocks are copied; a plain ResNet teacher's are not.
    Blocks whose last norm has no scale keep their initialisation. Returns the names of the blocks zeroed."""
    zeroed = []
    with torch.no_grad():
        for index, layer in enumerate(student.model):
            name = f"model.{index}"
            last = layer.conv_block[-1] if isinstance(layer, Residual) else None
            if name not in copied and getattr(last, "weight", None) is not None:
                last.weight.zero_()
                zeroed.append(name)
    return zeroed


def _same_kind(source: nn.Module, target: nn.Module) -> bool:
    """A plain conv and its channel-sliceable version are the same kind of layer."""
    return isinstance(source, nn.Conv2d) and isinstance(target, nn.Conv2d) or \
        isinstance(source, nn.ConvTranspose2d) and isinstance(target, nn.ConvTranspose2d)


def _copy_conv(weight: torch.Tensor, bias: torch.Tensor | None, target: nn.Module, kept_in: torch.Tensor,
               kept_out: torch.Tensor | None = None, transposed: bool = False) -> torch.Tensor:
    """Copy the rows of largest L1 norm (or ``kept_out``) of an [out, in, k, k] weight; returns the rows kept."""
    weight = weight[:, kept_in]
    width = target.weight.shape[1 if transposed else 0]
    if width > weight.shape[0]:
        raise GzooError(f"the student is wider than the teacher ({width} > {weight.shape[0]} channels)")
    if kept_out is None:
        kept_out = weight.abs().flatten(1).sum(1).topk(width).indices.sort().values
    chosen = weight[kept_out]
    target.weight.copy_(chosen.transpose(0, 1) if transposed else chosen)
    if bias is not None and target.bias is not None:
        target.bias.copy_(bias[kept_out])
    return kept_out


def _copy_block(source: nn.Module, target: nn.Module, kept: torch.Tensor) -> bool:
    """A residual block: depthwise convs keep their input's channels, the last conv returns to the trunk's."""
    convs = [m for m in source.conv_block.modules() if isinstance(m, nn.Conv2d)]
    targets = [m for m in target.conv_block.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != len(targets) or any((s.groups > 1) != (t.groups > 1) for s, t in zip(convs, targets, strict=True)):
        return False
    inner = kept
    for position, (source_conv, target_conv) in enumerate(zip(convs, targets, strict=True)):
        if source_conv.groups > 1:
            target_conv.weight.copy_(source_conv.weight[inner])
            target_conv.bias.copy_(source_conv.bias[inner])
            continue
        last = position == len(convs) - 1
        inner = _copy_conv(source_conv.weight, source_conv.bias, target_conv, inner, kept if last else None)
    return True
