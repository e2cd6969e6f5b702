"""GauGAN's SPADE generator and GAN Compression's mobile, sub-mobile and super versions of it.

Layer and parameter names follow GAN Compression's ``models/modules/spade_architecture`` (``fc``,
``head_0``, ``G_middle_0``, ``G_middle_1``, ``up_0``..``up_3``, ``conv_img``; in each block ``conv_0``,
``conv_1``, ``conv_s`` and the SPADE norms ``norm_0``, ``norm_1``, ``norm_s`` with ``param_free_norm``,
``mlp_shared``, ``mlp_gamma``, ``mlp_beta``), so its checkpoints load key for key.

The skeleton: the one-hot label map, resized to the latent grid, goes through a 3x3 conv (``fc``); then
seven SPADE residual blocks with x2 nearest upsampling between them (five upsamplings for "normal", six
for "more", which adds one before ``G_middle_1``); LeakyReLU 0.2, a 3x3 conv to RGB and tanh.

- ``spade_generator``: the original GauGAN (SPADE gamma/beta are dense 3x3 convs).
- ``mobile_spade_generator``: gamma/beta made separable.
- ``sub_mobile_spade_generator``: the mobile generator with widths from an 8-number config.
- ``super_mobile_spade_generator``: the mobile generator whose convs run on the first channels of shared
  weights; ``set_config`` picks a sub-network, ``extract_subnet`` cuts it out.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gzoo.models.layers import (
    SeparableConv2d,
    SliceableBatchNorm2d,
    SuperConv2d,
    SuperSeparableConv2d,
    copy_sliced_weights,
)
from gzoo.models.registry import register_model
from gzoo.models.resnet import parse_config

BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
KINDS = ("spade", "mobile", "super")


@dataclass(frozen=True)
class SpadeDataset:
    """What a GauGAN trained on a dataset expects: label ids, image size and upsampling."""

    label_classes: int  # label ids 0 .. label_classes - 1
    dontcare: bool  # label 255 ("don't care") becomes one more class
    height: int
    width: int
    upsampling: str  # "normal" (5 x2 upsamplings) or "more" (6)

    @property
    def label_nc(self) -> int:
        # One channel per label, plus the instance edge map that both datasets provide.
        return self.label_classes + self.dontcare + 1

    @property
    def latent(self) -> tuple[int, int]:
        """Height and width of the grid the label map is first resized to."""
        factor = 2 ** (6 if self.upsampling == "more" else 5)
        return self.height // factor, self.width // factor

    @property
    def upsampled(self) -> tuple[bool, ...]:
        """Which of the seven blocks follow a x2 upsampling: all but head_0, and but G_middle_1 with "normal"."""
        skipped = {"head_0"} if self.upsampling == "more" else {"head_0", "G_middle_1"}
        return tuple(name not in skipped for name in BLOCKS)

    def check_input(self, seg: torch.Tensor, name: str) -> None:
        """One line when ``seg`` is not the one-hot label map a GauGAN for dataset ``name`` takes."""
        expected = (self.label_nc, self.height, self.width)
        if seg.dim() != 4 or tuple(seg.shape[1:]) != expected:
            raise ValueError(
                f"a GauGAN for {name} takes a one-hot label map of shape (B, {self.label_nc}, {self.height}, "
                f"{self.width}) ({self.label_classes} labels{' + dontcare' if self.dontcare else ''} + instance "
                f"edges), not {tuple(int(n) for n in seg.shape)}; build it with gzoo.models.spade.label_map_to_input"
            )


SPADE_DATASETS = {
    "cityscapes": SpadeDataset(label_classes=35, dontcare=False, height=256, width=512, upsampling="more"),
    "coco-stuff": SpadeDataset(label_classes=182, dontcare=True, height=256, width=256, upsampling="normal"),
}


def spade_dataset(name: str) -> SpadeDataset:
    if name not in SPADE_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(SPADE_DATASETS)}, not {name!r}")
    return SPADE_DATASETS[name]


@dataclass(frozen=True)
class SpadeWidths:
    """Channel widths of the skeleton."""

    fc: int  # output of fc: the trunk width of head_0, G_middle_0 and G_middle_1
    inner: tuple[int, ...]  # conv_0 output of each block; an up block's output too
    hidden: tuple[int, ...]  # hidden width of each block's SPADE norms

    @classmethod
    def uniform(cls, ngf: int) -> "SpadeWidths":
        if ngf <= 0:
            raise ValueError(f"ngf must be a positive integer, not {ngf}")
        return cls(16 * ngf, (16 * ngf,) * 3 + (8 * ngf, 4 * ngf, 2 * ngf, ngf), (2 * ngf,) * 7)

    @classmethod
    def from_config(cls, config: str | list[int]) -> "SpadeWidths":
        """Widths of GAN Compression's sub-mobile SPADE config ``c0_c1_..._c7``.

        fc 16*c0; inner widths of head_0, G_middle_0, G_middle_1 16*c1, 16*c2, 16*c3; up_0..up_3 8*c4, 4*c5,
        2*c6, c7; every block's SPADE hidden width is twice its own number.
        """
        c = parse_config(config)
        inner = (16 * c[1], 16 * c[2], 16 * c[3], 8 * c[4], 4 * c[5], 2 * c[6], c[7])
        return cls(16 * c[0], inner, tuple(2 * v for v in c[1:]))

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """(in, middle, out, hidden) of every block: trunk blocks return to their input width, up blocks
        end at their inner width."""
        width, result = self.fc, []
        for name, inner, hidden in zip(BLOCKS, self.inner, self.hidden, strict=True):
            out = inner if name.startswith("up") else width
            result.append((width, inner, out, hidden))
            width = out
        return result


def sub_config_widths(config: str | list[int], ngf: int) -> SpadeWidths:
    """Widths of a sub-mobile config, which must fit in the full network at ``ngf``."""
    values = parse_config(config)
    if max(values) > ngf:
        raise ValueError(f"config {config!r} is wider than ngf {ngf}; use numbers up to {ngf} or a larger ngf")
    return SpadeWidths.from_config(values)


class SpadeNorm(nn.Module):
    """Parameter-free batch norm, then a scale and shift predicted from the label map (GauGAN's SPADE).

    ``full_width`` sizes the batch norm statistics: the full network's width, which compressed
    networks keep (see :class:`SliceableBatchNorm2d`).
    """

    def __init__(self, width: int, full_width: int, label_nc: int, hidden: int, kind: str) -> None:
        super().__init__()
        self.param_free_norm = SliceableBatchNorm2d(full_width, affine=False)
        shared = SuperConv2d if kind == "super" else nn.Conv2d
        self.mlp_shared = nn.Sequential(shared(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = self._modulation(kind, hidden, width)
        self.mlp_beta = self._modulation(kind, hidden, width)

    @staticmethod
    def _modulation(kind: str, hidden: int, width: int) -> nn.Module:
        if kind == "spade":
            return nn.Conv2d(hidden, width, 3, padding=1)
        separable = SuperSeparableConv2d if kind == "super" else SeparableConv2d
        return separable(hidden, width, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SpadeResnetBlock(nn.Module):
    """[SPADE, LeakyReLU, 3x3 conv] twice, plus the input (through SPADE and a 1x1 conv in up blocks)."""

    def __init__(self, widths: tuple[int, int, int, int], full: tuple[int, int], label_nc: int, shortcut: bool,
                 kind: str, spectral_norm: bool) -> None:
        super().__init__()
        fin, middle, fout, hidden = widths
        conv = SuperConv2d if kind == "super" else nn.Conv2d
        wrap = nn.utils.spectral_norm if spectral_norm else (lambda module: module)
        self.conv_0 = wrap(conv(fin, middle, 3, padding=1))
        self.conv_1 = wrap(conv(middle, fout, 3, padding=1))
        self.conv_s = wrap(conv(fin, fout, 1, bias=False)) if shortcut else None
        self.norm_0 = SpadeNorm(fin, full[0], label_nc, hidden, kind)
        self.norm_1 = SpadeNorm(middle, full[1], label_nc, hidden, kind)
        self.norm_s = SpadeNorm(fin, full[0], label_nc, hidden, kind) if shortcut else None

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        skip = x if self.conv_s is None else self.conv_s(self.norm_s(x, seg))
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return skip + dx


class SpadeGenerator(nn.Module):
    """The SPADE skeleton at given widths (see the module docstring).

    ``full`` are the widths of the uncompressed network, which size the batch norm statistics; a
    compressed network passes its own narrower ``widths`` beside them.
    """

    def __init__(self, widths: SpadeWidths, full: SpadeWidths, dataset: str = "cityscapes", kind: str = "spade",
                 spectral_norm: bool = False) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.dataset_name, self.dataset = dataset, spade_dataset(dataset)
        self.widths, self.full = widths, full
        label_nc = self.dataset.label_nc
        conv = SuperConv2d if kind == "super" else nn.Conv2d
        self.fc = conv(label_nc, widths.fc, 3, padding=1)
        for name, block, full_block in zip(BLOCKS, widths.blocks(), full.blocks(), strict=True):
            # Up blocks change width in the full network, so they have a learned shortcut at any width.
            setattr(self, name, SpadeResnetBlock(block, full_block[:2], label_nc, name.startswith("up"), kind,
                                                 spectral_norm))
        self.conv_img = conv(widths.inner[-1], 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.upsampled = self.dataset.upsampled

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        self.dataset.check_input(seg, self.dataset_name)
        x = self.fc(F.interpolate(seg, size=self.dataset.latent, mode="nearest"))
        for name, upsample in zip(BLOCKS, self.upsampled, strict=True):
            x = getattr(self, name)(self.up(x) if upsample else x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))

    def remove_spectral_norm(self) -> None:
        """Fold spectral norm into plain weights, as GAN Compression does before distillation and export."""
        for module in self.modules():
            if hasattr(module, "weight_orig"):
                nn.utils.remove_spectral_norm(module)


class SuperMobileSpadeGenerator(SpadeGenerator):
    """A once-for-all supernet: every sub-mobile config up to ``ngf`` runs on its shared weights."""

    def __init__(self, ngf: int, dataset: str = "cityscapes") -> None:
        widths = SpadeWidths.uniform(ngf)
        super().__init__(widths, widths, dataset, kind="super")
        self.ngf = ngf
        self.active_config: str | None = None

    def set_config(self, config: str | list[int] | None) -> None:
        """Make the forward pass run sub-network ``config`` (None: the whole supernet)."""
        widths = self.full if config is None else sub_config_widths(config, self.ngf)
        self.fc.active_out_channels = widths.fc
        for name, (fin, middle, fout, hidden) in zip(BLOCKS, widths.blocks(), strict=True):
            block = getattr(self, name)
            block.conv_0.active_out_channels, block.conv_1.active_out_channels = middle, fout
            norms = [(block.norm_0, fin), (block.norm_1, middle)]
            if block.conv_s is not None:
                block.conv_s.active_out_channels = fout
                norms.append((block.norm_s, fin))
            for norm, width in norms:
                norm.mlp_shared[0].active_out_channels = hidden
                norm.mlp_gamma.active_out_channels = norm.mlp_beta.active_out_channels = width
        self.active_config = None if config is None else "_".join(map(str, parse_config(config)))

    def extract_subnet(self, config: str | list[int]) -> SpadeGenerator:
        """A standalone sub-mobile generator with this supernet's weights for ``config``."""
        subnet = SpadeGenerator(sub_config_widths(config, self.ngf), self.full, self.dataset_name, kind="mobile")
        copy_sliced_weights(self, subnet)
        return subnet.train(self.training)


def label_map_to_input(labels: Any, dataset: str = "cityscapes", instance: Any = None) -> torch.Tensor:
    """The generator input for a label image: one-hot labels and the instance edge map, (B, label_nc, H, W).

    ``labels`` and ``instance`` are integer maps shaped (H, W), (B, H, W) or (B, 1, H, W): tensors, numpy
    arrays or PIL images. With COCO-Stuff, label 255 ("don't care") becomes the last label channel. The
    edge map marks every pixel whose right, left, lower or upper neighbour belongs to another instance.
    """
    d = spade_dataset(dataset)
    labels, instance = _as_map(labels, "labels"), _as_map(instance, "instance")
    if d.dontcare:
        labels = torch.where(labels == 255, d.label_classes, labels)
    n_labels = d.label_classes + d.dontcare
    if labels.min() < 0 or labels.max() >= n_labels:
        raise ValueError(f"{dataset} label ids run from 0 to {n_labels - 1}, but the label map holds "
                         f"{int(labels.min())}..{int(labels.max())}; pass the dataset's label-id image")
    if instance.shape != labels.shape:
        raise ValueError(f"the instance map is {tuple(instance.shape)} but the label map {tuple(labels.shape)}; "
                         "pass the instance map of the same image")
    one_hot = torch.zeros(labels.size(0), n_labels, *labels.shape[2:]).scatter_(1, labels, 1.0)
    return torch.cat([one_hot, _edges(instance)], dim=1)


def _as_map(value: Any, name: str) -> torch.Tensor:
    if value is None:
        raise ValueError(f"{name} is missing; pass the image's {name} id map too (both GauGAN datasets take "
                         "the instance edges as a channel)")
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.is_floating_point():
        raise ValueError(f"{name} must hold integer ids, not {tensor.dtype} values; pass the id image unscaled")
    if tensor.dim() not in (2, 3, 4) or (tensor.dim() == 4 and tensor.size(1) != 1):
        raise ValueError(f"{name} must be shaped (H, W), (B, H, W) or (B, 1, H, W), not {tuple(tensor.shape)}")
    return tensor.long().reshape(-1, 1, *tensor.shape[-2:])


def _edges(instance: torch.Tensor) -> torch.Tensor:
    edge = torch.zeros_like(instance, dtype=torch.bool)
    across = instance[..., :, 1:] != instance[..., :, :-1]
    edge[..., :, 1:] |= across
    edge[..., :, :-1] |= across
    down = instance[..., 1:, :] != instance[..., :-1, :]
    edge[..., 1:, :] |= down
    edge[..., :-1, :] |= down
    return edge.float()


@register_model
def spade_generator(dataset: str = "cityscapes", ngf: int = 64, spectral_norm: bool = False) -> SpadeGenerator:
    """GauGAN's SPADE generator for cityscapes (512x256) or coco-stuff (256x256); input from label_map_to_input."""
    widths = SpadeWidths.uniform(ngf)
    return SpadeGenerator(widths, widths, dataset, "spade", spectral_norm)


@register_model
def mobile_spade_generator(dataset: str = "cityscapes", ngf: int = 64,
                           spectral_norm: bool = False) -> SpadeGenerator:
    """GAN Compression's mobile SPADE generator: SPADE gamma/beta convs made separable."""
    widths = SpadeWidths.uniform(ngf)
    return SpadeGenerator(widths, widths, dataset, "mobile", spectral_norm)


@register_model
def sub_mobile_spade_generator(config: str = "32_40_40_32_40_24_32_24", ngf: int = 48,
                               dataset: str = "cityscapes") -> SpadeGenerator:
    """A compressed mobile SPADE generator with the widths of an 8-number config cut from a network at ``ngf``."""
    return SpadeGenerator(sub_config_widths(config, ngf), SpadeWidths.uniform(ngf), dataset, "mobile")


@register_model
def super_mobile_spade_generator(ngf: int = 64, dataset: str = "cityscapes") -> SuperMobileSpadeGenerator:
    """The once-for-all mobile SPADE supernet (channel-sliceable, shared weights)."""
    return SuperMobileSpadeGenerator(ngf, dataset)
