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
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gzoo.models.layers import check_dropout, conv_bias, norm_layer, padding
from gzoo.models.registry import register_model

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
        blocks = []
        for i, block in enumerate(config["blocks"]):
            _check_keys(block, ("res", "dw"), f"widths: blocks[{i}]")
            blocks.append(BlockWidths(*(_widths(block[key], len(KERNEL_SIZES), f"blocks[{i}].{key}", minimum=0)
                                        for key in ("res", "dw"))))
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
