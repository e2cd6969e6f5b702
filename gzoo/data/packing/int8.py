"""8-bit weights: every conv weight as int8 with one float16 scale per output channel (symmetric), every other
floating tensor (biases, the norms' affine parameters and statistics) in float16, integer buffers as they are.

The scale of a channel is max|w| / 127 over that channel, so its largest weight is exact and every weight is
within half a step. A transposed convolution's output channels are its weight's second axis.
"""

import json

import torch
from torch import nn

from gzoo.data.packing import Packed

FORMAT = "int8"
SCALE = ".scale"  # suffix of a quantized weight's scales


def pack(model: nn.Module) -> Packed:
    axes = {f"{name}.weight": 1 if isinstance(module, nn.ConvTranspose2d) else 0
            for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d))}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if key in axes:
            tensors[key], tensors[key + SCALE] = quantize(value, axes[key])
        elif value.is_floating_point():
            tensors[key] = value.half()
        else:
            tensors[key] = value
    return Packed(FORMAT, tensors, {"axes": json.dumps(axes, separators=(",", ":"))})


def quantize(weight: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, float16 scale per channel of ``axis``)."""
    channels = weight.movedim(axis, 0).flatten(1)
    scale = (channels.abs().amax(dim=1) / 127).half()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale)).float()  # an all-zero channel stays zero
    quantized = (weight / _along(safe, axis, weight.dim())).round().clamp(-127, 127).to(torch.int8)
    return quantized, scale


def decode(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    axes = json.loads(metadata["axes"])
    state = {}
    for key, value in tensors.items():
        if key.endswith(SCALE) and key[: -len(SCALE)] in axes:
            continue
        if key in axes:
            state[key] = value.float() * _along(tensors[key + SCALE].float(), axes[key], value.dim())
        elif value.is_floating_point():
            state[key] = value.float()
        else:
            state[key] = value
    return state


def _along(scale: torch.Tensor, axis: int, dims: int) -> torch.Tensor:
    """Per-channel scales shaped to broadcast along ``axis`` of a ``dims``-dimensional weight."""
    shape = [1] * dims
    shape[axis] = -1
    return scale.view(shape)
