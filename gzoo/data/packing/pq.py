"""Product-quantized weights (Bit-Goes-Down): a layer's weight as a codebook of k float16 centroids of length d and
one index per block, in the smallest integer type that holds k; every other tensor as it is.

The block layout is the original's (facebookresearch/kill-the-bits, ``utils/reshape.py``): each output channel's
flattened weights (C_in * kh * kw) are cut into consecutive blocks of d (so a block of 9 in a 3x3 conv is one
input channel's kernel), and index ``block * C_out + channel`` names the centroid of that block. A transposed
convolution is quantized as the convolution it equals (its weight with input and output swapped and the kernel
flipped); the packed form says so, and decoding turns it back.

This module also holds the paper's size accounting, which the ``kill-the-bits`` converter shares: ceil(log2 k)
bits per block index, float16 centroids, every other parameter at float32, MB = 2**20 bytes.
"""

import json
from collections.abc import Iterable

import torch

from gzoo.data.packing import Packed

FORMAT = "pq"
MB = 2**20
FP16_BYTES = 2
FP32_BYTES = 4
CENTROIDS = ".centroids"  # suffixes of a quantized weight's two tensors
ASSIGNMENTS = ".assignments"


def to_blocks(weight: torch.Tensor, d: int) -> torch.Tensor:
    """A [C_out, ...] weight as its (n_blocks * C_out) x d blocks, row ``block * C_out + channel``."""
    c_out = weight.shape[0]
    return weight.reshape(c_out, -1, d).transpose(0, 1).reshape(-1, d)


def from_blocks(blocks: torch.Tensor, shape: Iterable[int]) -> torch.Tensor:
    """The inverse of ``to_blocks``: rows ``block * C_out + channel`` back into a weight of ``shape``."""
    shape = tuple(shape)
    d = blocks.shape[1]
    return blocks.view(-1, shape[0], d).transpose(0, 1).reshape(shape)


def decode_weight(centroids: torch.Tensor, assignments: torch.Tensor, shape: Iterable[int]) -> torch.Tensor:
    """The dense float32 weight of ``shape`` that a codebook and its block indices stand for."""
    return from_blocks(centroids.float()[assignments.long()], shape)


def as_conv(weight: torch.Tensor) -> torch.Tensor:
    """A transposed convolution's [C_in, C_out, kh, kw] weight as the [C_out, C_in, kh, kw] weight of the
    convolution it equals (on its zero-interleaved input); its own inverse."""
    return weight.transpose(0, 1).flip(2, 3)


def index_dtype(k: int) -> torch.dtype:
    """The smallest integer type safetensors stores that holds indices 0 .. k - 1."""
    return torch.uint8 if k <= 2**8 else torch.int16 if k <= 2**15 else torch.int32


def accounted_bytes(layers: Iterable[tuple[int, int, int]], dense_params: int) -> int:
    """The paper's size of (number of blocks, k, d) per quantized layer: ceil(log2 k) bits per block index (all
    indices rounded up to whole bytes once), k * d float16 centroid values, and ``dense_params`` parameters left
    as they are at float32."""
    layers = list(layers)
    index_bits = sum(n_blocks * (k - 1).bit_length() for n_blocks, k, _ in layers)
    centroid_values = sum(k * d for _, k, d in layers)
    return -(-index_bits // 8) + centroid_values * FP16_BYTES + dense_params * FP32_BYTES


def pack(state: dict[str, torch.Tensor], codebooks: dict[str, tuple[torch.Tensor, torch.Tensor, bool]],
         dense_params: int) -> Packed:
    """A dense state dict with the weights named in ``codebooks`` (key -> centroids, assignments, transposed)
    stored as their codebooks; ``dense_params`` counts the parameters kept as they are (the accounting's rest)."""
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    for key, value in state.items():
        if key not in codebooks:
            tensors[key] = value.detach().cpu()
            continue
        centroids, assignments, transposed = codebooks[key]
        k = centroids.shape[0]
        tensors[key + CENTROIDS] = centroids.detach().cpu().half()
        tensors[key + ASSIGNMENTS] = assignments.detach().cpu().to(index_dtype(k))
        layers[key] = {"shape": list(value.shape), "transposed": transposed}
    size = accounted_bytes([(len(codebooks[key][1]), *codebooks[key][0].shape) for key in layers], dense_params)
    return Packed(FORMAT, tensors, {"layers": json.dumps(layers, separators=(",", ":"))}, accounted_bytes=size)


def decode(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    layers = json.loads(metadata["layers"])
    state = {}
    for key, value in tensors.items():
        if key.endswith(CENTROIDS) and key[: -len(CENTROIDS)] in layers:
            continue
        if key.endswith(ASSIGNMENTS) and key[: -len(ASSIGNMENTS)] in layers:
            continue
        state[key] = value
    for key, layer in layers.items():
        shape = layer["shape"]
        if layer["transposed"]:
            conv_shape = [shape[1], shape[0], *shape[2:]]
            state[key] = as_conv(decode_weight(tensors[key + CENTROIDS], tensors[key + ASSIGNMENTS], conv_shape))
        else:
            state[key] = decode_weight(tensors[key + CENTROIDS], tensors[key + ASSIGNMENTS], shape)
    return state

