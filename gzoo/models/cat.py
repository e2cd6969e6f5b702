"""CAT's inception residual generator (snap-research/CAT, ``inception_9blocks``), teacher and pruned students.

The ResNet-9 skeleton with inception residual blocks: six parallel branches summed, a norm, plus the
input. For every kernel size k in (1, 3, 5) a dense branch [pad, kxk conv to c, norm, ReLU, dropout, pad,
kxk conv back] and a depthwise branch [1x1 conv to c, norm, ReLU, pad, kxk depthwise conv, norm, ReLU,
dropout, 1x1 conv back]; c = 4*ngf // 6 (42 at ngf 64).

CAT prunes the teacher into a student of the same class: every down/up width and every branch width
shrinks and a branch pruned to nothing is not built at all. :class:`CatWidths` holds all those widths
and round-trips through a JSON-able dict. Parameter names follow CAT (``down_sampling.1.weight``,
``features.0.res_ops.0.1.0.weight``, ``features.0.dw_ops.2.4.bias``, ``up_sampling.7.weight``); as there,
a block's ``res_ops``/``dw_ops`` lists hold only the branches that exist, in kernel order.

CAT's GauGAN generator (``inception_spade_generator.py``), :func:`cat_inception_spade_generator`, lives here
too, as CAT's and pruned by CAT: GauGAN's skeleton (``fc`` then an affine batch norm ``fc_norm``, seven blocks
head_0 .. up_3, the upsampling of gzoo.models.spade) whose blocks are inception blocks, and whose SPADE norms
predict gamma and beta by inception branches from the label map. That block replaces SPADE's shared mapping
conv and the residual block's second conv; :class:`CatSpadeWidths` holds its widths. Keys, parameter counts,
MACs and float32 outputs equal the original class's.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gzoo.models.layers import check_dropout, conv_bias, norm_layer, padding
from gzoo.models.registry import register_model
from gzoo.models.spade import BLOCKS as SPADE_BLOCKS
from gzoo.models.spade import spade_dataset

KERNEL_SIZES = (1, 3, 5)


@dataclass(frozen=True)
class BlockWidths:
    """Inner widths of one block's dense (``res``) and depthwise (``dw``) branches, per kernel size; 0: absent."""

    res: tuple[int, ...]
    dw: tuple[int, ...]


@dataclass(frozen=True)
class CatWidths:
    """Every width of the generator: stem, the two downsampling convs (the last is the trunk width), the
    blocks' branches and the two upsampling convs."""

    stem: int
    down: tuple[int, int]
    blocks: tuple[BlockWidths, ...]
    up: tuple[int, int]

    @classmethod
    def uniform(cls, ngf: int, n_blocks: int = 9) -> "CatWidths":
        """The teacher: ResNet-9 widths and c = trunk // 6 in each of the six branches."""
        if ngf <= 0 or n_blocks < 0:
            raise ValueError(f"ngf must be positive and n_blocks non-negative, not ngf {ngf}, n_blocks {n_blocks}")
        c = 4 * ngf // 6
        block = BlockWidths((c,) * len(KERNEL_SIZES), (c,) * len(KERNEL_SIZES))
        return cls(ngf, (2 * ngf, 4 * ngf), (block,) * n_blocks, (2 * ngf, ngf))

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "CatWidths":
        """Widths from ``{"stem": 64, "down": [128, 256], "blocks": [{"res": [42, 42, 42], "dw": [42, 42,
        42]}, ...], "up": [128, 64]}``; branch lists follow kernel sizes 1, 3, 5 and 0 removes a branch."""
        _check_keys(config, ("stem", "down", "blocks", "up"), "widths")
        if not isinstance(config["blocks"], list | tuple):
            raise ValueError(f"widths: blocks must be a list with one {{res, dw}} dict per block, "
                             f"not {config['blocks']!r}")
        blocks = [_branch_widths(block, f"blocks[{i}]") for i, block in enumerate(config["blocks"])]
        if not _is_width(config["stem"], 1):
            raise ValueError(f"widths: stem must be a positive integer, not {config['stem']!r}")
        return cls(config["stem"], _widths(config["down"], 2, "down"), tuple(blocks), _widths(config["up"], 2, "up"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form :meth:`from_dict` reads."""
        return {"stem": self.stem, "down": list(self.down),
                "blocks": [{"res": list(b.res), "dw": list(b.dw)} for b in self.blocks], "up": list(self.up)}


def _check_keys(config: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(config, dict) or set(config) != set(keys):
        found = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{where} must be a dict with exactly the keys {', '.join(keys)}, not {found}")


def _branch_widths(block: Any, where: str, extra: tuple[str, ...] = ()) -> BlockWidths:
    """A ``{"res": [...], "dw": [...]}`` dict (with ``extra`` keys besides, read by the caller) as BlockWidths."""
    _check_keys(block, ("res", "dw", *extra), f"widths: {where}")
    return BlockWidths(*(_widths(block[key], len(KERNEL_SIZES), f"{where}.{key}", minimum=0) for key in ("res", "dw")))


def _is_width(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _widths(values: Any, count: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or len(values) != count or not all(_is_width(v, minimum) for v in values):
        kind = "non-negative" if minimum == 0 else "positive"
        raise ValueError(f"widths: {name} must be a list of {count} {kind} integers, not {values!r}")
    return tuple(values)


def _pad(kind: str, amount: int) -> nn.Module:
    # CAT keeps a padding module in every branch (zero padding included) so the layer indices never move.
    pad, zero = padding(kind, amount)
    return pad[0] if pad else nn.ZeroPad2d(zero)


def _conv_norm_relu(cin: int, cout: int, kernel: int, norm: str, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, groups=groups, bias=conv_bias(norm)), norm_layer(norm)(cout),
                         nn.ReLU(True))


class InceptionResidualBlock(nn.Module):
    """The branches of :class:`BlockWidths` summed, a norm (``pw_bn``), plus the input."""

    def __init__(self, dim: int, widths: BlockWidths, norm: str, dropout: float, padding_type: str) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.res_ops = nn.ModuleList(
            nn.Sequential(_pad(padding_type, k // 2), _conv_norm_relu(dim, c, k, norm), nn.Dropout(dropout),
                          _pad(padding_type, k // 2), nn.Conv2d(c, dim, k, bias=bias))
            for c, k in zip(widths.res, KERNEL_SIZES, strict=True) if c > 0
        )
        self.dw_ops = nn.ModuleList(
            nn.Sequential(_conv_norm_relu(dim, c, 1, norm), _pad(padding_type, k // 2),
                          _conv_norm_relu(c, c, k, norm, groups=c), nn.Dropout(dropout),
                          nn.Conv2d(c, dim, 1, bias=bias))
            for c, k in zip(widths.dw, KERNEL_SIZES, strict=True) if c > 0
        )
        # Built even when every branch is pruned away, as in CAT, so checkpoints keep the same keys.
        self.pw_bn = norm_layer(norm)(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [*self.res_ops, *self.dw_ops]
        if not branches:
            return x
        total = branches[0](x)
        for branch in branches[1:]:
            total = total + branch(x)
        return x + self.pw_bn(total)


class CatInceptionGenerator(nn.Module):
    """``down_sampling`` (stem and two stride-2 convs), ``features`` (inception blocks), ``up_sampling``."""

    def __init__(self, widths: CatWidths, input_nc: int = 3, output_nc: int = 3, norm: str = "instance_affine",
                 dropout: float = 0.0, padding_type: str = "reflect") -> None:
        super().__init__()
        check_dropout(dropout)
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        self.widths = widths
        down: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, widths.stem, 7, bias=bias),
                                 make_norm(widths.stem), nn.ReLU(True)]
        width = widths.stem
        for out in widths.down:
            down += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=bias), make_norm(out), nn.ReLU(True)]
            width = out
        self.down_sampling = nn.Sequential(*down)
        self.features = nn.Sequential(*(InceptionResidualBlock(width, block, norm, dropout, padding_type)
                                        for block in widths.blocks))
        up: list[nn.Module] = []
        for out in widths.up:
            up += [nn.ConvTranspose2d(width, out, 3, stride=2, padding=1, output_padding=1, bias=bias), make_norm(out),
                   nn.ReLU(True)]
            width = out
        self.up_sampling = nn.Sequential(*up, nn.ReflectionPad2d(3), nn.Conv2d(width, output_nc, 7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_sampling(self.features(self.down_sampling(x)))

    def width_config(self) -> dict[str, Any]:
        """This generator's widths as a JSON-able dict (``cat_inception_generator(widths=...)`` rebuilds it)."""
        return self.widths.to_dict()


@register_model
def cat_inception_generator(ngf: int = 64, widths: dict | None = None, n_blocks: int = 9,
                            norm: str = "instance_affine", dropout: float = 0.0, input_nc: int = 3, output_nc: int = 3,
                            padding_type: str = "reflect") -> CatInceptionGenerator:
    """CAT's inception generator: the teacher at ``ngf``, or a pruned student described by ``widths``.

    ``widths`` (see :meth:`CatWidths.from_dict`) sets every width and replaces ``ngf``; its number of blocks
    must equal ``n_blocks``. CAT's CycleGAN teachers use affine instance norm, its pix2pix ones ``batch``.
    """
    if widths is None:
        config = CatWidths.uniform(ngf, n_blocks)
    else:
        config = CatWidths.from_dict(widths)
        if len(config.blocks) != n_blocks:
            raise ValueError(f"widths describe {len(config.blocks)} blocks but n_blocks is {n_blocks}; "
                             f"pass n_blocks={len(config.blocks)}")
    return CatInceptionGenerator(config, input_nc, output_nc, norm, dropout, padding_type)


# --- inception SPADE (CAT's GauGAN generator, ``inception_spade_generator.py``) -------------------------------

SPADE_HIDDEN = 128  # InceptionSPADE's nhidden, which its branch widths divide
REDUCTION = 6  # the scripts' --channels_reduction_factor: a teacher branch is width // 6
ACTIVATIONS = ("leaky_relu", "relu")


@dataclass(frozen=True)
class SpadeBlockWidths:
    """One inception SPADE block: its own branches (``main``, from the trunk) and those of its norm (``spade``,
    from the label map to the norm's gamma and beta)."""

    main: BlockWidths
    spade: BlockWidths


@dataclass(frozen=True)
class CatSpadeWidths:
    """Every width of the inception SPADE generator: ``fc`` (the trunk of head_0, G_middle_0 and G_middle_1;
    up_0..up_3 halve it in turn) and the branches of the seven blocks."""

    fc: int
    blocks: tuple[SpadeBlockWidths, ...]  # head_0, G_middle_0, G_middle_1, up_0 .. up_3

    @staticmethod
    def trunk(fc: int) -> list[tuple[int, int]]:
        """(input, output) width of each block: the trunk blocks keep ``fc``, each up block halves its input."""
        result, width = [], fc
        for name in SPADE_BLOCKS:
            out = width // 2 if name.startswith("up") else width
            result.append((width, out))
            width = out
        return result

    @classmethod
    def uniform(cls, ngf: int) -> "CatSpadeWidths":
        """The teacher: fc 16 * ngf; every main branch min(in, out) // 6 wide, every norm branch 128 // 6."""
        if ngf <= 0:
            raise ValueError(f"ngf must be a positive integer, not {ngf}")
        def every(width: int) -> BlockWidths:
            return BlockWidths((width // REDUCTION,) * len(KERNEL_SIZES), (width // REDUCTION,) * len(KERNEL_SIZES))

        trunk = cls.trunk(16 * ngf)
        return cls(16 * ngf, tuple(SpadeBlockWidths(every(min(fin, fout)), every(SPADE_HIDDEN)) for fin, fout in trunk))

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "CatSpadeWidths":
        """Widths from ``{"fc": 1024, "blocks": [{"res": [170, 170, 170], "dw": [170, 170, 170], "spade": {"res":
        [21, 21, 21], "dw": [21, 21, 21]}}, ...]}``, seven blocks; branch lists follow kernel sizes 1, 3, 5 and 0
        removes a branch."""
        _check_keys(config, ("fc", "blocks"), "widths")
        if not isinstance(config["blocks"], list | tuple) or len(config["blocks"]) != len(SPADE_BLOCKS):
            raise ValueError(f"widths: blocks must be a list of {len(SPADE_BLOCKS)} {{res, dw, spade}} dicts "
                             f"({', '.join(SPADE_BLOCKS)}), not {config['blocks']!r}")
        if not _is_width(config["fc"], 2 ** len(SPADE_BLOCKS[3:])):
            raise ValueError(f"widths: fc must be an integer of at least 16 (up_3 gets fc / 16), not {config['fc']!r}")
        blocks = tuple(SpadeBlockWidths(_branch_widths(block, name, ("spade",)),
                                        _branch_widths(block["spade"], f"{name}.spade"))
                       for name, block in zip(SPADE_BLOCKS, config["blocks"], strict=True))
        return cls(config["fc"], blocks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form :meth:`from_dict` reads."""
        return {"fc": self.fc, "blocks": [{"res": list(b.main.res), "dw": list(b.main.dw),
                                           "spade": {"res": list(b.spade.res), "dw": list(b.spade.dw)}}
                                          for b in self.blocks]}


class ConvUnit(nn.Module):
    """CAT's ``ConvSyncBNReLU`` (conv, batch norm, activation) or, with no norm and no activation, its ``Conv``:
    a same-padded conv under the names ``conv``, ``norm``, ``active``."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = True, norm: str | None = None,
                 active: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, groups=groups, bias=bias)
        if norm is not None:  # "affine" or "plain"
            self.norm = nn.BatchNorm2d(cout, affine=norm == "affine")
        if active is not None:
            self.active = _activation(active)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        return self.active(x) if hasattr(self, "active") else x


def _activation(name: str) -> nn.Module:
    # The original's get_active_fn: torch's default slope (0.01) for LeakyReLU.
    return nn.LeakyReLU(0.01, inplace=True) if name == "leaky_relu" else nn.ReLU(inplace=True)


def _branch_sum(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # Summed in the original's order (dense branches, then depthwise ones, then the two sums), so the float32
    # outputs are the original's bit for bit.
    return sum(op(x) for op in module.res_ops) + sum(op(x) for op in module.dw_ops)


class InceptionSpadeNorm(nn.Module):
    """CAT's ``InceptionSPADE``: parameter-free batch norm, scaled by 1 + gamma and shifted by beta, both
    predicted from the label map by inception branches (dense kxk, and 1x1 + depthwise kxk) that end in one conv
    to 2 * width channels, gamma then beta. A norm with no branch leaves the normalised input."""

    def __init__(self, width: int, label_nc: int, widths: BlockWidths) -> None:
        super().__init__()
        self.width = width
        self.param_free_norm = nn.BatchNorm2d(width, affine=False)
        self.res_ops = nn.ModuleList(
            nn.Sequential(ConvUnit(label_nc, c, k, norm="affine", active="relu"),
                          nn.Conv2d(c, 2 * width, k, padding=(k - 1) // 2))
            for c, k in zip(widths.res, KERNEL_SIZES, strict=True) if c > 0
        )
        self.dw_ops = nn.ModuleList(
            nn.Sequential(ConvUnit(label_nc, c, 1, norm="affine", active="relu"),
                          ConvUnit(c, c, k, groups=c, norm="affine", active="relu"), nn.Conv2d(c, 2 * width, 1))
            for c, k in zip(widths.dw, KERNEL_SIZES, strict=True) if c > 0
        )

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        if not self.res_ops and not self.dw_ops:
            return normalized * 1  # as the original (gamma = beta = 0), whose multiply the MAC count sees
        modulation = _branch_sum(self, F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + modulation[:, :self.width]) + modulation[:, self.width:]


class InceptionSpadeBlock(nn.Module):
    """CAT's ``SPADEInvertedResidualChannels``: the inception SPADE norm and the activation, then the block's
    inception branches (dense kxk conv, norm, activation, kxk conv; 1x1 conv, norm, activation, depthwise kxk,
    plain norm, activation, 1x1 conv) summed, plus the input, through [batch norm, 1x1 conv] when the width
    changes. A block with no branch passes on its input (through that shortcut when there is one)."""

    def __init__(self, fin: int, fout: int, widths: SpadeBlockWidths, label_nc: int, activation: str) -> None:
        super().__init__()
        self.res_ops = nn.ModuleList(
            nn.Sequential(ConvUnit(fin, c, k, norm="affine", active=activation), ConvUnit(c, fout, k))
            for c, k in zip(widths.main.res, KERNEL_SIZES, strict=True) if c > 0
        )
        self.dw_ops = nn.ModuleList(
            nn.Sequential(ConvUnit(fin, c, 1, norm="affine", active=activation),
                          ConvUnit(c, c, k, groups=c, norm="plain", active=activation), ConvUnit(c, fout, 1))
            for c, k in zip(widths.main.dw, KERNEL_SIZES, strict=True) if c > 0
        )
        self.shortcut = nn.Sequential(nn.BatchNorm2d(fin), ConvUnit(fin, fout, 1, bias=False)) if fin != fout \
            else None
        self.spade = InceptionSpadeNorm(fin, label_nc, widths.spade)
        self.active = _activation(activation)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        if not self.res_ops and not self.dw_ops:
            return x if self.shortcut is None else self.shortcut(x)
        total = _branch_sum(self, self.active(self.spade(x, seg)))
        return total + (x if self.shortcut is None else self.shortcut(x))


class CatInceptionSpadeGenerator(nn.Module):
    """GauGAN's skeleton with CAT's inception blocks: the label map resized to the latent grid, a 3x3 conv
    (``fc``) and an affine batch norm (``fc_norm``), seven inception SPADE blocks with x2 nearest upsampling
    between them as in GauGAN, LeakyReLU 0.2, a 3x3 conv to RGB (``conv_img``) and tanh."""

    def __init__(self, widths: CatSpadeWidths, dataset: str = "cityscapes", activation: str = "leaky_relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
        self.dataset_name, self.dataset = dataset, spade_dataset(dataset)
        self.widths, self.activation = widths, activation
        label_nc = self.dataset.label_nc
        self.fc_norm = nn.BatchNorm2d(widths.fc)
        self.fc = nn.Conv2d(label_nc, widths.fc, 3, padding=1)
        for name, (fin, fout), block in zip(SPADE_BLOCKS, widths.trunk(widths.fc), widths.blocks, strict=True):
            setattr(self, name, InceptionSpadeBlock(fin, fout, block, label_nc, activation))
        self.conv_img = nn.Conv2d(widths.trunk(widths.fc)[-1][1], 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        self.dataset.check_input(seg, self.dataset_name)
        x = self.fc_norm(self.fc(F.interpolate(seg, size=self.dataset.latent, mode="nearest")))
        for name, upsample in zip(SPADE_BLOCKS, self.dataset.upsampled, strict=True):
            x = getattr(self, name)(self.up(x) if upsample else x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))

    def width_config(self) -> dict[str, Any]:
        """This generator's widths as a JSON-able dict (``cat_inception_spade_generator(widths=...)`` rebuilds it)."""
        return self.widths.to_dict()


@register_model
def cat_inception_spade_generator(dataset: str = "cityscapes", ngf: int = 64, widths: dict | None = None,
                                  activation: str = "leaky_relu") -> CatInceptionSpadeGenerator:
    """CAT's inception SPADE generator for GauGAN's datasets: the teacher at ``ngf``, or a pruned student described
    by ``widths`` (see :meth:`CatSpadeWidths.from_dict`; it replaces ``ngf``). Input from label_map_to_input.

    ``activation`` in the blocks' branches: the teacher trains with leaky_relu (train.py's spade model sets
    --active_fn nn.LeakyReLU), CAT's distilled students run relu (distill.py's default --active_fn)."""
    config = CatSpadeWidths.uniform(ngf) if widths is None else CatSpadeWidths.from_dict(widths)
    return CatInceptionSpadeGenerator(config, dataset, activation)
