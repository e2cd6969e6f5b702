"""CAT (Jin et al., CVPR 2021, "Teachers Do More Than Teach", snap-research/CAT) as a method of stages.

- ``teacher`` (when the recipe has ``stages.teacher``): train CAT's inception teacher. Paired data (and
  ``single`` data, whose ground truth is the recipe teacher's output): pix2pix, GAN + lambda_recon * L1 to the
  ground truth, the discriminator seeing the input beside the output. Unpaired data: CycleGAN, two
  generators and two discriminators, cycle and identity L1, image pools of generated images. Without the
  stage the recipe's teacher is a trained ``cat_inception_generator``.
- ``prune``: the original's one-step pruning (``utils/common.py`` ``shrink_model``). The |gamma| of the norms
  after the stem and downsampling convs, of the first norm of every branch of every inception block and of
  the upsampling norms are pooled; one global threshold is binary-searched until the pruned network's
  paper-convention MACs at the recipe's input size are at most the target and the bracket is within 1e-3
  of its lower end. Channels at or below it go; a branch left with none is not built (a block with no
  branch passes its input on); every down/up layer keeps at least ``prune_cin_lb`` channels (those of
  largest |gamma|); the trunk width is the last downsampling norm's. The result is a width config of
  ``cat_inception_generator``. As the original, the student starts from the teacher's surviving weights
  and is then re-initialised (convs N(0, 0.02), batch norms N(1, 0.02); instance-norm scales stay the
  teacher's, and the blocks' output norms start fresh); ``keep_teacher_weights`` keeps every surviving
  weight instead, an experiment the original does not offer.
- ``distill``: GAN + lambda_recon * L1 (to the ground truth for paired data, to the teacher's output for
  unpaired) - lambda_distill * the sum of kernel alignments between the student's and the teacher's
  features at the original's 4 taps (``down_sampling.9``, ``features.2/5/8``), no mapping layer; the
  discriminator starts as the teacher stage's (the original restores the teacher's).
- ``export``: the distilled student.

GauGAN (``stages.teacher.arch: cat_inception_spade_generator``, recipes/cat/gaugan_cityscapes_{a,b}.yaml; data in
the ``cityscapes`` layout): the same four stages with GauGAN's training (``gzoo.compress.gaugan``, the recipe's
``gaugan`` section). The teacher is CAT's inception SPADE trained as train.py's spade model (hinge GAN against the
multi-scale discriminator, discriminator feature matching and VGG19 losses, TTUR, the generator's update first);
``prune`` is ``shrink_spade_model`` (:func:`prune_spade_to_target`: |gamma| of ``fc_norm`` and of the first norm
of every branch of every block and of its SPADE norm, one threshold, fc floored to a multiple of 16 and at least
16 * ``prune_cin_lb``, MACs on the dataset's label maps), the student built anew at the pruned widths (ReLU,
Xavier); ``distill`` adds - lambda_distill * the kernel alignments at ``head_0``, ``G_middle_1`` and ``up_1``
(base_spade_distiller's mapping layers) to the teacher's losses, the discriminator restored from the teacher
stage's.
"""

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gzoo.compress.cyclegan import CycleGan, ImagePool
from gzoo.compress.data import input_channels
from gzoo.compress.engine import FeatureTaps, TeacherOutputs, TrainingSettings, frozen
from gzoo.compress.gaugan import GauGan, GauGanSettings, ttur_groups
from gzoo.compress.losses import gan_loss, kernel_alignment
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.perceptual import check_available, perceptual_network
from gzoo.compress.pipeline import Run
from gzoo.compress.recipe import Recipe, check_stage_length, one_of
from gzoo.compress.settings import DataSettings, StageSettings
from gzoo.compress.transfer import init_normal
from gzoo.data.modeldir import save_model_dir
from gzoo.errors import GzooError
from gzoo.models import create_model
from gzoo.models.cat import (
    KERNEL_SIZES,
    BlockWidths,
    CatInceptionGenerator,
    CatInceptionSpadeGenerator,
    CatSpadeWidths,
    CatWidths,
    SpadeBlockWidths,
    cat_inception_generator,
    cat_inception_spade_generator,
)
from gzoo.models.patchgan import MultiscaleDiscriminator, PatchGanDiscriminator
from gzoo.models.spade import BLOCKS as SPADE_BLOCKS
from gzoo.models.spade import SPADE_DATASETS, SpadeGenerator, spade_dataset

ARCH = "cat_inception_generator"
SPADE_ARCH = "cat_inception_spade_generator"
TAPS = ["down_sampling.9", "features.2", "features.5", "features.8"]  # the original's mapping_layers
SPADE_TAPS = ["head_0", "G_middle_1", "up_1"]  # base_spade_distiller's mapping_layers
GAN_MODES = ("hinge", "lsgan", "vanilla")
PRUNABLE_NORMS = ("instance_affine", "batch")  # norms with a scale to prune by
DOWN_NORMS, DOWN_CONVS = (2, 5, 8), (1, 4, 7)  # in down_sampling: stem, first and second downsampling
UP_NORMS, UP_CONVS, LAST_CONV = (1, 4), (0, 3), 7  # in up_sampling


# --- the recipe sections ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatTrainingSettings(TrainingSettings):
    gan_mode: str = "hinge"  # distill_options.py / train_options.py default; CycleGAN: lsgan
    ndf: int = 128  # both options' default; CycleGAN: 64
    n_layers_d: int = 3
    lambda_gan: float = 1.0
    lambda_recon: float = 100.0  # the distiller's default (pix2pix); horse2zebra: 5
    lambda_distill: float = 1.0  # h2z 1.0, cityscapes 0.5, map2sat 1.3
    # ``single`` data: keep the recipe teacher's output (the ground truth) per distinct training input. Exact,
    # and possible only when inputs repeat (data.load_size == data.crop_size: no random crop).
    cache_targets: bool = False


@dataclass(frozen=True)
class TeacherStage(StageSettings):
    """Training CAT's inception teacher: its architecture and the losses of train.py's pix2pix/CycleGAN."""

    arch: str = ARCH  # or cat_inception_spade_generator, CAT's GauGAN teacher (recorded, not trainable yet)
    dataset: str = "cityscapes"  # the inception SPADE's: GauGAN's label set and image size
    ngf: int = 64
    n_blocks: int = 9
    norm: str = "instance_affine"  # CycleGAN scripts: instance + --norm_affine; pix2pix scripts: batch
    batch_size: int | None = None  # None: training.batch_size (the scripts train the teacher at 32, distil at 80)
    dropout: float = 0.0
    lambda_recon: float = 100.0  # pix2pix_model.py default; map2sat: 10
    lambda_cycle: float = 10.0  # cycle_gan_model.py lambda_A = lambda_B
    lambda_identity: float = 0.5
    pool_size: int = 50


@dataclass(frozen=True)
class PruneSettings:
    target_macs: float = 0.0  # paper-convention MACs at input_size (the original's --target_flops); required
    prune_cin_lb: int = 16  # fewest channels a down/up layer keeps
    input_size: int | None = None  # the square size MACs are counted at (None: data.crop_size)
    keep_teacher_weights: bool = False  # True: start from every surviving teacher weight (not in the original)


@dataclass(frozen=True)
class Stages:
    teacher: TeacherStage | None = None
    prune: PruneSettings = field(default_factory=PruneSettings)
    distill: StageSettings | None = None


def _check(recipe: Recipe) -> None:
    """Choices and combinations a type check cannot see; with a teacher stage, the target too."""
    training, stages, data = recipe.training, recipe.stages, recipe.data
    one_of(training.gan_mode, GAN_MODES, "training.gan_mode")
    for name in ("ndf", "n_layers_d"):
        if getattr(training, name) < 1:
            raise GzooError(f"recipe: 'training.{name}' must be at least 1")
    single = data.layout == "single" or data.builtin is not None  # builtin photos are single data
    if training.cache_targets and (not single or data.load_size != data.crop_size):
        raise GzooError("recipe: training.cache_targets needs single data with data.load_size equal to "
                        "data.crop_size (only then do the teacher's outputs, the targets, repeat)")
    if stages.distill is None:
        raise GzooError("recipe: cat needs a 'stages.distill' section (its epochs or steps)")
    check_stage_length("distill", stages.distill)
    prune = stages.prune
    if prune.target_macs <= 0:
        raise GzooError("recipe: cat needs 'stages.prune.target_macs', the student's paper-convention MACs "
                        "(e.g. 2.6e+9)")
    if prune.prune_cin_lb < 1:
        raise GzooError("recipe: 'stages.prune.prune_cin_lb' must be at least 1")
    if stages.teacher is not None:
        teacher = stages.teacher
        check_stage_length("teacher", teacher)
        one_of(teacher.arch, (ARCH, SPADE_ARCH), "stages.teacher.arch")
        one_of(teacher.norm, PRUNABLE_NORMS, "stages.teacher.norm")
        if teacher.arch == SPADE_ARCH:
            _check_spade_teacher(teacher, prune, data)
            return
        if teacher.ngf < 1 or teacher.n_blocks < 3 * len(TAPS[1:]):
            raise GzooError("recipe: stages.teacher needs ngf >= 1 and n_blocks >= 9 (the taps are blocks 3, 6, 9)")
        size = prune.input_size or data.crop_size
        check_target(CatWidths.uniform(teacher.ngf, teacher.n_blocks), teacher.norm, prune.target_macs,
                     (size, size), prune.prune_cin_lb)


def _check_spade_teacher(teacher: TeacherStage, prune: PruneSettings, data: DataSettings) -> None:
    one_of(teacher.dataset, tuple(SPADE_DATASETS), "stages.teacher.dataset")
    if data.layout != "cityscapes" or teacher.dataset != "cityscapes":
        raise GzooError(f"recipe: the inception SPADE trains on label maps in the cityscapes layout (gtFine/ and "
                        f"leftImg8bit/), the only label-map layout gzoo reads; set data.layout to cityscapes and "
                        f"stages.teacher.dataset to cityscapes (not {data.layout} and {teacher.dataset})")
    if teacher.norm != "batch":
        raise GzooError("recipe: the inception SPADE's norms are batch norms (the scripts' spadesyncbatch3x3); set "
                        "stages.teacher.norm to batch")
    if prune.input_size is not None:
        raise GzooError("recipe: the inception SPADE's MACs are counted on its dataset's label maps (512x256 for "
                        "cityscapes); remove stages.prune.input_size")
    if prune.keep_teacher_weights:
        raise GzooError("recipe: stages.prune.keep_teacher_weights does not apply to the inception SPADE: CAT's "
                        "GauGAN pruning keeps no teacher weight (its fc width is a rounded count, not a channel set)")
    check_spade_target(CatSpadeWidths.uniform(teacher.ngf), teacher.dataset, prune.target_macs, prune.prune_cin_lb)


def _check_inputs(recipe: Recipe) -> None:
    if recipe.data.layout == "cityscapes":  # GauGAN's perceptual network, before anything downloads or trains
        check_available(recipe.gaugan.perceptual)


def _check_model(recipe: Recipe, model: nn.Module) -> None:
    """Label maps go with a GauGAN teacher, images with an image one: the recipe teacher is what the student
    replaces (with a teacher stage) or what it is pruned from (without one)."""
    label_maps = recipe.data.layout == "cityscapes"
    if isinstance(model, CatInceptionSpadeGenerator | SpadeGenerator) != label_maps:
        kind = "a GauGAN (label maps in)" if label_maps else "an image-to-image generator"
        raise GzooError(f"the teacher is a {type(model).__name__}, but this recipe's data ({recipe.data.layout} "
                        f"layout) needs {kind}; name a teacher that fits the data")


def _stages(recipe: Recipe) -> list[str]:
    return [*(["teacher"] if recipe.stages.teacher is not None else []), "prune", "distill", "export"]


# --- pruning: paper-convention MACs of a width config, the norm scales, the threshold search -------------------

def macs_paper(widths: CatWidths, height: int, width: int, norm: str, input_nc: int = 3, output_nc: int = 3) -> int:
    """Paper-convention MACs (``gzoo.metrics.count_macs``'s ``macs_paper``) of ``cat_inception_generator`` with
    these widths, from the widths alone: convs cost output elements x input channels per group x kernel
    area, instance norms one per output element, batch norms nothing. Thousands of times faster than running
    the counter, which the search needs; tests check the two agree."""
    counted = norm.startswith("instance")

    def conv(h: int, w: int, out: int, cin: int, kernel: int) -> int:
        return h * w * out * cin * kernel * kernel

    def normed(h: int, w: int, channels: int) -> int:
        return h * w * channels if counted else 0

    h, w, c = height, width, widths.stem
    total = conv(h, w, c, input_nc, 7) + normed(h, w, c)
    for out in widths.down:
        h, w = (h + 1) // 2, (w + 1) // 2
        total += conv(h, w, out, c, 3) + normed(h, w, out)
        c = out
    for block in widths.blocks:
        for inner, k in zip(block.res, KERNEL_SIZES, strict=True):
            if inner:
                total += conv(h, w, inner, c, k) + normed(h, w, inner) + conv(h, w, c, inner, k)
        for inner, k in zip(block.dw, KERNEL_SIZES, strict=True):
            if inner:
                total += conv(h, w, inner, c, 1) + conv(h, w, inner, 1, k) + 2 * normed(h, w, inner) + \
                    conv(h, w, c, inner, 1)
        if any(block.res) or any(block.dw):
            total += normed(h, w, c)  # pw_bn, skipped by a block with no branch
    for out in widths.up:
        h, w = 2 * h, 2 * w
        total += conv(h, w, out, c, 3) + normed(h, w, out)
        c = out
    return total + conv(h, w, output_nc, c, 7)


@dataclass(frozen=True)
class Scales:
    """|gamma| of the norms CAT prunes by. Per block, one entry per kernel size for the dense (``res``) then
    the depthwise (``dw``) branches; None where the teacher has no such branch."""

    down: tuple[torch.Tensor, ...]  # stem, first and second downsampling
    blocks: tuple[tuple[torch.Tensor | None, ...], ...]
    up: tuple[torch.Tensor, ...]

    def pooled(self) -> torch.Tensor:
        parts = [*self.down, *(s for block in self.blocks for s in block if s is not None), *self.up]
        return torch.cat(parts)


def norm_scales(teacher: CatInceptionGenerator) -> Scales:
    """The teacher's |gamma| in the layout pruning reads them (``prune.get_bn_to_prune`` and the down/up norms)."""
    def scale(norm: nn.Module) -> torch.Tensor:
        return norm.weight.detach().abs().double().cpu()

    blocks = []
    for block, widths in zip(teacher.features, teacher.widths.blocks, strict=True):
        res, dw = iter(block.res_ops), iter(block.dw_ops)
        blocks.append(tuple(scale(next(res)[1][1]) if c else None for c in widths.res) +
                      tuple(scale(next(dw)[0][1]) if c else None for c in widths.dw))
    return Scales(tuple(scale(teacher.down_sampling[i]) for i in DOWN_NORMS), tuple(blocks),
                  tuple(scale(teacher.up_sampling[i]) for i in UP_NORMS))


@dataclass(frozen=True)
class Kept:
    """The teacher's channels a threshold keeps, by layer, as sorted index tensors (empty: branch removed)."""

    down: tuple[torch.Tensor, ...]
    blocks: tuple[tuple[torch.Tensor, ...], ...]
    up: tuple[torch.Tensor, ...]

    @property
    def widths(self) -> CatWidths:
        count = len(KERNEL_SIZES)
        blocks = tuple(BlockWidths(tuple(len(i) for i in b[:count]), tuple(len(i) for i in b[count:]))
                       for b in self.blocks)
        return CatWidths(len(self.down[0]), (len(self.down[1]), len(self.down[2])), blocks,
                         (len(self.up[0]), len(self.up[1])))


def kept_channels(scales: Scales, threshold: float, cin_lb: int) -> Kept:
    """Channels with |gamma| above ``threshold``; a down/up layer below ``cin_lb`` keeps its ``cin_lb`` largest
    (the original's private threshold; ties go to the lower index, so exactly ``cin_lb`` stay)."""
    def above(values: torch.Tensor | None) -> torch.Tensor:
        return torch.empty(0, dtype=torch.long) if values is None else (values > threshold).nonzero().flatten()

    def layer(values: torch.Tensor) -> torch.Tensor:
        kept = above(values)
        if len(kept) < cin_lb:
            kept = torch.sort(-values, stable=True).indices[:cin_lb].sort().values
        return kept

    return Kept(tuple(layer(s) for s in scales.down), tuple(tuple(above(s) for s in b) for b in scales.blocks),
                tuple(layer(s) for s in scales.up))


def smallest_widths(teacher: CatWidths, cin_lb: int) -> CatWidths:
    """What a threshold above every scale leaves: no branch, ``cin_lb`` channels in every down/up layer."""
    empty = BlockWidths((0,) * len(KERNEL_SIZES), (0,) * len(KERNEL_SIZES))
    return CatWidths(cin_lb, (cin_lb, cin_lb), (empty,) * len(teacher.blocks), (cin_lb, cin_lb))


def check_target(teacher: CatWidths, norm: str, target: float, size: tuple[int, int], cin_lb: int) -> int:
    """One line when pruning ``teacher`` to ``target`` cannot work; returns the teacher's MACs."""
    narrowest = min(teacher.stem, *teacher.down, *teacher.up)
    if cin_lb > narrowest:
        raise GzooError(f"recipe: stages.prune.prune_cin_lb {cin_lb} is more than the teacher's narrowest down/up "
                        f"layer ({narrowest} channels); lower it")
    height, width = size
    teacher_macs = macs_paper(teacher, height, width, norm)
    smallest = macs_paper(smallest_widths(teacher, cin_lb), height, width, norm)
    if target < smallest:
        raise GzooError(f"recipe: stages.prune.target_macs {target:.4g} is below {smallest:.4g}, the fewest MACs "
                        f"prune_cin_lb {cin_lb} allows at {height}x{width} (every branch pruned, {cin_lb} channels "
                        "in each down/up layer); raise the target or lower stages.prune.prune_cin_lb")
    if target >= teacher_macs:
        raise GzooError(f"recipe: stages.prune.target_macs {target:.4g} is not below the teacher's {teacher_macs:.4g} "
                        f"MACs at {height}x{width}; give a smaller target")
    return teacher_macs


@dataclass(frozen=True)
class Pruned:
    widths: CatWidths | CatSpadeWidths
    threshold: float
    macs_paper: int
    teacher_macs_paper: int
    target_macs: float
    iterations: int


def prune_to_target(teacher: CatInceptionGenerator, target: float, size: tuple[int, int], cin_lb: int = 16,
                    norm: str | None = None) -> Pruned:
    """``shrink_model``'s search: bisect the global |gamma| threshold until the pruned MACs are at most ``target``
    and (ub - lb) <= 1e-3 * lb."""
    norm = norm or teacher_norm(teacher)
    if norm not in PRUNABLE_NORMS:
        raise GzooError(f"CAT prunes by norm scales and the teacher's {norm} norms have none; give a teacher with "
                        f"{' or '.join(PRUNABLE_NORMS)} norms")
    teacher_macs = check_target(teacher.widths, norm, target, size, cin_lb)
    scales = norm_scales(teacher)
    threshold, searched, iterations = bisect_threshold(
        scales.pooled(), lambda t: macs_paper(kept_channels(scales, t, cin_lb).widths, *size, norm), target)
    return Pruned(kept_channels(scales, threshold, cin_lb).widths, threshold, searched, teacher_macs, target,
                  iterations)


def bisect_threshold(pooled: torch.Tensor, macs_at: Callable[[float], int], target: float) -> tuple[float, int, int]:
    """The search of ``shrink_model`` and ``shrink_spade_model``: bisect a threshold between the smallest and the
    largest pooled |gamma| until ``macs_at(threshold)`` is at most ``target`` and (ub - lb) <= 1e-3 * lb.
    Returns the threshold, its MACs and the number of steps."""
    lower, upper = float(pooled.min()), float(pooled.max())
    searched, iterations = math.inf, 0
    while abs(upper - lower) > 1e-3 * lower or searched > target:
        threshold = (lower + upper) / 2
        searched = macs_at(threshold)
        if searched > target:
            lower = threshold
        else:
            upper = threshold
        iterations += 1
        if iterations > 10_000:  # the bracket collapses to one float long before; a guard against a hang
            raise GzooError(f"pruning found no threshold for target {target:.4g} in {iterations} steps")
    return threshold, searched, iterations


def teacher_norm(model: CatInceptionGenerator) -> str:
    norm = model.down_sampling[DOWN_NORMS[0]]
    if isinstance(norm, nn.BatchNorm2d):
        return "batch"
    return "instance_affine" if getattr(norm, "weight", None) is not None else "instance"


def copy_surviving(teacher: CatInceptionGenerator, student: CatInceptionGenerator, kept: Kept,
                   block_norms: bool = False) -> None:
    """The teacher's weights of the kept channels into ``student`` (of ``kept.widths``), as ``shrink_model``
    copies them; its blocks' output norms (``pw_bn``) only with ``block_norms``, the original builds them anew."""
    with torch.no_grad():
        inputs = torch.arange(teacher.down_sampling[DOWN_CONVS[0]].in_channels)
        for conv, norm, rows in zip(DOWN_CONVS, DOWN_NORMS, kept.down, strict=True):
            _copy(teacher.down_sampling[conv], student.down_sampling[conv], rows, inputs)
            _copy_norm(teacher.down_sampling[norm], student.down_sampling[norm], rows)
            inputs = rows
        trunk = inputs
        count = len(KERNEL_SIZES)
        for source, target, widths, channels in zip(teacher.features, student.features, teacher.widths.blocks,
                                                    kept.blocks, strict=True):
            pairs = _branch_pairs(source.res_ops, target.res_ops, widths.res, channels[:count])
            for old, new, inner in pairs:  # [pad, (conv, norm, relu), dropout, pad, conv]
                _copy(old[1][0], new[1][0], inner, trunk)
                _copy_norm(old[1][1], new[1][1], inner)
                _copy(old[4], new[4], trunk, inner)
            for old, new, inner in _branch_pairs(source.dw_ops, target.dw_ops, widths.dw, channels[count:]):
                _copy(old[0][0], new[0][0], inner, trunk)  # [(1x1, norm, relu), pad, (dw kxk, norm, relu), drop, 1x1]
                _copy_norm(old[0][1], new[0][1], inner)
                _copy(old[2][0], new[2][0], inner, None)
                _copy_norm(old[2][1], new[2][1], inner)
                _copy(old[4], new[4], trunk, inner)
            if block_norms:
                _copy_norm(source.pw_bn, target.pw_bn, trunk)
        for conv, norm, columns in zip(UP_CONVS, UP_NORMS, kept.up, strict=True):
            _copy(teacher.up_sampling[conv], student.up_sampling[conv], columns, inputs, transposed=True)
            _copy_norm(teacher.up_sampling[norm], student.up_sampling[norm], columns)
            inputs = columns
        _copy(teacher.up_sampling[LAST_CONV], student.up_sampling[LAST_CONV], None, inputs)


def _branch_pairs(old: nn.ModuleList, new: nn.ModuleList, teacher_widths: tuple[int, ...],
                  kept: tuple[torch.Tensor, ...]) -> list[tuple[nn.Module, nn.Module, torch.Tensor]]:
    """(teacher branch, student branch, kept channels) for every branch the student still has."""
    olds, news, pairs = iter(old), iter(new), []
    for width, channels in zip(teacher_widths, kept, strict=True):
        source = next(olds) if width else None
        if len(channels):
            pairs.append((source, next(news), channels))
    return pairs


def _copy(source: nn.Module, target: nn.Module, rows: torch.Tensor | None, columns: torch.Tensor | None,
          transposed: bool = False) -> None:
    """A conv's weight at output ``rows`` and input ``columns`` (None: all); a transposed conv's weight is
    [in, out, k, k]."""
    weight = source.weight
    if transposed:
        weight = weight[columns][:, rows]
    else:
        weight = weight if rows is None else weight[rows]
        weight = weight if columns is None else weight[:, columns]
    target.weight.copy_(weight)
    if source.bias is not None:
        target.bias.copy_(source.bias if rows is None else source.bias[rows])


def _copy_norm(source: nn.Module, target: nn.Module, rows: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        if getattr(source, name, None) is not None:
            getattr(target, name).copy_(getattr(source, name)[rows])
    if getattr(source, "num_batches_tracked", None) is not None:
        target.num_batches_tracked.copy_(source.num_batches_tracked)


def pruned_student(teacher: CatInceptionGenerator, threshold: float, cin_lb: int, keep_teacher_weights: bool,
                   norm: str, dropout: float = 0.0) -> CatInceptionGenerator:
    """The student a threshold gives: the teacher's surviving weights, then (by default) the original's
    re-initialisation of its convs and batch norms."""
    kept = kept_channels(norm_scales(teacher), threshold, cin_lb)
    student = CatInceptionGenerator(kept.widths, teacher.down_sampling[DOWN_CONVS[0]].in_channels,
                                    teacher.up_sampling[LAST_CONV].out_channels, norm, dropout)
    copy_surviving(teacher, student, kept, block_norms=keep_teacher_weights)
    if not keep_teacher_weights:
        init_normal(student, instance_norms=False)
    return student


# --- pruning the inception SPADE (GauGAN): ``shrink_spade_model`` ----------------------------------------------

def spade_macs_paper(widths: CatSpadeWidths, dataset: str = "cityscapes") -> int:
    """Paper-convention MACs of ``cat_inception_spade_generator`` with these widths on ``dataset``'s label maps,
    from the widths alone (tests check it against the counter): convs cost output elements x input channels
    per group x kernel area, batch norms nothing, and each block with branches one MAC per element of its input
    for SPADE's modulating multiply, which CAT's own profiler does not count (it counts the convs only)."""
    d = spade_dataset(dataset)
    label_nc, (h, w) = d.label_nc, d.latent

    def branches(widths: BlockWidths, cin: int, cout: int) -> int:  # per output pixel
        dense = sum(c * cin * k * k + cout * c * k * k for c, k in zip(widths.res, KERNEL_SIZES, strict=True))
        depthwise = sum(c * cin + c * k * k + cout * c for c, k in zip(widths.dw, KERNEL_SIZES, strict=True))
        return dense + depthwise

    total = h * w * widths.fc * label_nc * 9
    for (fin, fout), block, upsampled in zip(widths.trunk(widths.fc), widths.blocks, d.upsampled, strict=True):
        h, w = (2 * h, 2 * w) if upsampled else (h, w)
        per_pixel = fout * fin if fin != fout else 0  # the shortcut's 1x1 conv
        if any(block.main.res) or any(block.main.dw):
            per_pixel += branches(block.main, fin, fout) + branches(block.spade, label_nc, 2 * fin) + fin
        total += h * w * per_pixel
    return total + h * w * 3 * widths.trunk(widths.fc)[-1][1] * 9


@dataclass(frozen=True)
class SpadeScales:
    """|gamma| CAT prunes the inception SPADE by: ``fc_norm``'s, and per block the first norm of each main
    branch then of each SPADE-norm branch (res, then dw; None where the teacher has no such branch)."""

    fc: torch.Tensor
    blocks: tuple[tuple[tuple[torch.Tensor | None, ...], tuple[torch.Tensor | None, ...]], ...]  # (main, spade)

    def pooled(self) -> torch.Tensor:
        return torch.cat([self.fc, *(s for block in self.blocks for part in block for s in part if s is not None)])


def spade_norm_scales(teacher: CatInceptionSpadeGenerator) -> SpadeScales:
    """``shrink_spade_model``'s scales: fc_norm and ``prune.get_bn_to_prune(spade=True)``'s first norms."""
    def scale(unit: nn.Module) -> torch.Tensor:
        return unit.norm.weight.detach().abs().double().cpu()

    def part(module: nn.Module, widths: BlockWidths) -> tuple[torch.Tensor | None, ...]:
        res, dw = iter(module.res_ops), iter(module.dw_ops)
        return tuple(scale(next(res)[0]) if c else None for c in widths.res) + \
            tuple(scale(next(dw)[0]) if c else None for c in widths.dw)

    blocks = tuple((part(getattr(teacher, name), widths.main), part(getattr(teacher, name).spade, widths.spade))
                   for name, widths in zip(SPADE_BLOCKS, teacher.widths.blocks, strict=True))
    return SpadeScales(teacher.fc_norm.weight.detach().abs().double().cpu(), blocks)


def spade_widths_at(scales: SpadeScales, threshold: float, cin_lb: int) -> CatSpadeWidths:
    """The widths a threshold leaves: every branch the count of its scales above it (none: the branch goes);
    ``fc`` the count of fc_norm's, floored to a multiple of 16 and at least 16 * ``cin_lb`` (the original's
    ch_div), so up_3 keeps at least ``cin_lb`` channels."""
    def counts(values: tuple[torch.Tensor | None, ...]) -> BlockWidths:
        kept = tuple(0 if v is None else int((v > threshold).sum()) for v in values)
        return BlockWidths(kept[:len(KERNEL_SIZES)], kept[len(KERNEL_SIZES):])

    fc = 16 * max(int((scales.fc > threshold).sum()) // 16, cin_lb)
    return CatSpadeWidths(fc, tuple(SpadeBlockWidths(counts(main), counts(spade)) for main, spade in scales.blocks))


def check_spade_target(teacher: CatSpadeWidths, dataset: str, target: float, cin_lb: int) -> int:
    """One line when pruning the inception SPADE ``teacher`` to ``target`` cannot work; returns its MACs."""
    if 16 * cin_lb > teacher.fc:
        raise GzooError(f"recipe: stages.prune.prune_cin_lb {cin_lb} keeps fc at 16 x {cin_lb} = {16 * cin_lb} "
                        f"channels or more, more than the teacher's {teacher.fc}; lower it")
    d = spade_dataset(dataset)
    teacher_macs = spade_macs_paper(teacher, dataset)
    empty = BlockWidths((0,) * len(KERNEL_SIZES), (0,) * len(KERNEL_SIZES))
    smallest = spade_macs_paper(CatSpadeWidths(16 * cin_lb, (SpadeBlockWidths(empty, empty),) * len(SPADE_BLOCKS)),
                                dataset)
    if target < smallest:
        raise GzooError(f"recipe: stages.prune.target_macs {target:.4g} is below {smallest:.4g}, the fewest MACs "
                        f"prune_cin_lb {cin_lb} allows at {d.height}x{d.width} (every branch pruned, fc "
                        f"{16 * cin_lb}); raise the target or lower stages.prune.prune_cin_lb")
    if target >= teacher_macs:
        raise GzooError(f"recipe: stages.prune.target_macs {target:.4g} is not below the teacher's {teacher_macs:.4g} "
                        f"MACs at {d.height}x{d.width}; give a smaller target")
    return teacher_macs


def prune_spade_to_target(teacher: CatInceptionSpadeGenerator, target: float, cin_lb: int = 16) -> Pruned:
    """``shrink_spade_model``: bisect one threshold on the pooled |gamma| until the pruned inception SPADE's
    paper-convention MACs on the teacher's label maps (512x256 for cityscapes) are at most ``target``."""
    teacher_macs = check_spade_target(teacher.widths, teacher.dataset_name, target, cin_lb)
    scales = spade_norm_scales(teacher)
    threshold, searched, iterations = bisect_threshold(
        scales.pooled(), lambda t: spade_macs_paper(spade_widths_at(scales, t, cin_lb), teacher.dataset_name),
        target)
    return Pruned(spade_widths_at(scales, threshold, cin_lb), threshold, searched, teacher_macs, target, iterations)


def pruned_spade_student(teacher: CatInceptionSpadeGenerator, widths: CatSpadeWidths) -> CatInceptionSpadeGenerator:
    """The original's GauGAN student: every layer built anew at the pruned widths (``shrink_spade_model`` copies
    no teacher weight; its fc width is a rounded count, not a set of channels), with ReLU in the blocks
    (distill.py's --active_fn), then ``init_net`` with ``--init_type xavier``: conv weights Xavier-normal with
    gain 0.02, batch-norm scales N(1, 0.02)."""
    student = cat_inception_spade_generator(teacher.dataset_name, widths=widths.to_dict(), activation="relu")
    return init_normal(student.to(next(teacher.parameters()).device), xavier=True)


# --- the stages -------------------------------------------------------------------------------------------------

def _teacher(run: Run, results: dict) -> dict:
    recipe, settings = run.recipe, run.recipe.stages.teacher
    spade = settings.arch == SPADE_ARCH
    teacher = init_normal(_new_teacher(settings), xavier=spade)  # GauGAN's models: --init_type xavier
    length, batch_size = _teacher_length(run, settings)
    if spade:
        _train_gaugan(run, "teacher", length, teacher, _gaugan_discriminator(recipe), batch_size=batch_size)
    elif recipe.data.layout == "unpaired":
        _train_cycle_gan(run, teacher, length, batch_size)
    else:
        _train_adversarial(run, "teacher", length, teacher, _discriminator(recipe, settings.norm),
                           settings.lambda_recon, batch_size=batch_size)
    state = run.final_state("teacher")["teacher"]
    directory = run.stage_dir("teacher") / "model"  # the trained teacher, for a later recipe to name
    if spade:
        d = spade_dataset(settings.dataset)
        arch_args = {"dataset": settings.dataset, "ngf": settings.ngf}
        shape = {"channels": d.label_nc, "height": d.height, "width": d.width}
        macs = spade_macs_paper(CatSpadeWidths.uniform(settings.ngf), settings.dataset)
    else:
        size = recipe.data.crop_size
        arch_args = {"ngf": settings.ngf, "n_blocks": settings.n_blocks, "norm": settings.norm,
                     "dropout": settings.dropout}
        shape = {"channels": 3, "height": size, "width": size}
        macs = macs_paper(CatWidths.uniform(settings.ngf, settings.n_blocks), size, size, settings.norm)
    if run.processes.is_main:
        save_model_dir(directory, state, {"arch": settings.arch, "arch_args": arch_args, "method": "cat",
                                          "task": recipe.task, "input": shape})
    return {"model": str(directory), "arch_args": arch_args, "macs_paper": macs}


def _prune(run: Run, results: dict) -> dict:
    recipe, settings = run.recipe, run.recipe.stages.prune
    teacher = _inception_teacher(run, results)
    started = time.perf_counter()
    if isinstance(teacher, CatInceptionSpadeGenerator):
        pruned = prune_spade_to_target(teacher, settings.target_macs, settings.prune_cin_lb)
        size = f"{teacher.dataset.height}x{teacher.dataset.width}"  # the label maps'
    else:
        size = settings.input_size or recipe.data.crop_size
        pruned = prune_to_target(teacher, settings.target_macs, (size, size), settings.prune_cin_lb)
    seconds = time.perf_counter() - started
    widths = pruned.widths.to_dict()
    if run.processes.is_main:
        run.stage_dir("prune").mkdir(parents=True, exist_ok=True)
        (run.stage_dir("prune") / "widths.json").write_text(json.dumps(widths, indent=1) + "\n")
    return {"widths": widths, "threshold": pruned.threshold, "macs_paper": pruned.macs_paper,
            "teacher_macs_paper": pruned.teacher_macs_paper, "target_macs": pruned.target_macs,
            "macs_input": size, "prune_cin_lb": settings.prune_cin_lb, "iterations": pruned.iterations,
            "seconds": round(seconds, 3), "keep_teacher_weights": settings.keep_teacher_weights}


def _distill(run: Run, results: dict) -> dict:
    recipe, prune = run.recipe, results["prune"]
    teacher = _inception_teacher(run, results)
    if isinstance(teacher, CatInceptionSpadeGenerator):
        return _distill_spade(run, results, teacher)
    norm = teacher_norm(teacher)
    student = pruned_student(teacher, prune["threshold"], prune["prune_cin_lb"], prune["keep_teacher_weights"], norm)
    if student.widths.to_dict() != prune["widths"]:
        raise GzooError("the teacher changed since the prune stage (its widths differ); start a new run")
    discriminator = _discriminator(recipe, norm)
    if "teacher" in results:  # the original restores the teacher's discriminator (D_A for CycleGAN)
        state = run.final_state("teacher")
        discriminator.load_state_dict(state["discriminator" if "discriminator" in state else "discriminator_a"])
    teacher_taps, student_taps = _taps(run, teacher), FeatureTaps(student, TAPS)

    def distill_loss() -> torch.Tensor:  # after the teacher's forward pass on the batch
        alignments = [kernel_alignment(s, t) for s, t in zip(student_taps.features(), teacher_taps.features(),
                                                                strict=True)]
        return -recipe.training.lambda_distill * sum(alignments)

    try:
        _train_adversarial(run, "distill", recipe.stages.distill, student, discriminator, recipe.training.lambda_recon,
                           distill_loss if recipe.training.lambda_distill > 0 else None, teacher)
    finally:
        student_taps.remove()
    return {"widths": prune["widths"], "discriminator_from": "teacher" if "teacher" in results else "initialised"}


def _distill_spade(run: Run, results: dict, teacher: CatInceptionSpadeGenerator) -> dict:
    """GauGAN's losses - lambda_distill * the kernel alignments at SPADE_TAPS (spade_distiller_modules' ``ka``)."""
    recipe, prune = run.recipe, results["prune"]
    student = pruned_spade_student(teacher, CatSpadeWidths.from_dict(prune["widths"]))
    discriminator = _gaugan_discriminator(recipe)
    if "teacher" in results:  # --restore_D_path: the teacher's discriminator
        discriminator.load_state_dict(run.final_state("teacher")["discriminator"])
    teacher_taps, student_taps = _taps(run, teacher, SPADE_TAPS), FeatureTaps(student, SPADE_TAPS)

    def distill_loss() -> torch.Tensor:
        alignments = [kernel_alignment(s, t) for s, t in zip(student_taps.features(), teacher_taps.features(),
                                                                strict=True)]
        return -recipe.training.lambda_distill * sum(alignments)

    try:
        _train_gaugan(run, "distill", recipe.stages.distill, student, discriminator,
                      distill_loss if recipe.training.lambda_distill > 0 else None, teacher)
    finally:
        student_taps.remove()
    return {"widths": prune["widths"], "discriminator_from": "teacher" if "teacher" in results else "initialised"}


def _export(run: Run, results: dict) -> Exported:
    prune = results["prune"]
    teacher = _inception_teacher(run, results)
    if isinstance(teacher, CatInceptionSpadeGenerator):
        d = teacher.dataset
        arch, arch_args = SPADE_ARCH, {"dataset": teacher.dataset_name, "widths": prune["widths"],
                                       "activation": "relu"}
        size = (d.height, d.width)
    else:
        widths = CatWidths.from_dict(prune["widths"])
        arch, arch_args = ARCH, {"widths": prune["widths"], "n_blocks": len(widths.blocks),
                                 "norm": teacher_norm(teacher)}
        size = (run.recipe.data.crop_size,) * 2
    student = create_model(arch, **arch_args)
    student.load_state_dict(run.final_state("distill")["student"])
    lineage = {"prune": prune, **({"teacher_stage": results["teacher"]} if "teacher" in results else {})}
    return Exported(arch, arch_args, student.state_dict(), size, lineage=lineage,
                    summary={"prune": {k: v for k, v in prune.items() if k != "widths"},
                             "cat_teacher_macs_paper": prune["teacher_macs_paper"]})


# --- what the stages share --------------------------------------------------------------------------------------

def _teacher_length(run: Run, settings: TeacherStage) -> tuple[StageSettings, int]:
    """The teacher stage's steps at its own batch size, and that batch size."""
    batch_size = settings.batch_size or run.recipe.training.batch_size
    if settings.steps is not None:
        return StageSettings(steps=settings.steps, steps_decay=settings.steps_decay, lr=settings.lr), batch_size
    per_epoch = -(-len(run.data) // batch_size)
    return StageSettings(steps=settings.epochs * per_epoch, steps_decay=(settings.epochs_decay or 0) * per_epoch,
                         lr=settings.lr), batch_size


def _new_teacher(settings: TeacherStage) -> CatInceptionGenerator | CatInceptionSpadeGenerator:
    if settings.arch == SPADE_ARCH:  # leaky_relu in the blocks: train.py's spade model
        return cat_inception_spade_generator(settings.dataset, ngf=settings.ngf)
    return cat_inception_generator(ngf=settings.ngf, n_blocks=settings.n_blocks, norm=settings.norm,
                                   dropout=settings.dropout)


def _inception_teacher(run: Run, results: dict) -> CatInceptionGenerator | CatInceptionSpadeGenerator:
    """The teacher to prune and distil from: the teacher stage's, or the recipe's (then a trained CAT teacher)."""
    if "inception_teacher" not in run.shared:
        if "teacher" in results:
            teacher = _new_teacher(run.recipe.stages.teacher)
            teacher.load_state_dict(run.final_state("teacher")["teacher"])
            teacher = teacher.to(run.processes.device).eval().requires_grad_(False)
        else:
            wanted = SPADE_ARCH if run.recipe.data.layout == "cityscapes" else ARCH
            if run.teacher.arch != wanted:
                raise GzooError(f"teacher {run.teacher.name} is a {run.teacher.arch}; a cat recipe without "
                                f"stages.teacher prunes a trained {wanted}: add a 'stages.teacher' section to train "
                                "one")
            teacher = run.teacher.model
            if wanted == ARCH and len(teacher.widths.blocks) < 9:
                raise GzooError(f"teacher {run.teacher.name} has {len(teacher.widths.blocks)} inception blocks; CAT "
                                "distils at blocks 3, 6 and 9, so it needs at least 9")
        run.shared["inception_teacher"] = teacher
    return run.shared["inception_teacher"]


def _taps(run: Run, teacher: nn.Module, names: list[str] = TAPS) -> FeatureTaps:
    if "teacher_taps" not in run.shared:
        run.shared["teacher_taps"] = FeatureTaps(teacher, names)
    return run.shared["teacher_taps"]


def _discriminator(recipe: Recipe, norm: str) -> nn.Module:
    """The original's n_layers PatchGAN, in the generator's norm (--norm_affine_D); pix2pix's sees the input
    beside the output."""
    channels = 3 if recipe.data.layout == "unpaired" else 6
    return init_normal(PatchGanDiscriminator(channels, recipe.training.ndf, recipe.training.n_layers_d, norm))


def _gaugan_discriminator(recipe: Recipe) -> MultiscaleDiscriminator:
    """SPADE's multi-scale discriminator on the label map beside the photo, initialised as define_D (xavier)."""
    options, training = recipe.gaugan, recipe.training
    channels = input_channels(recipe.data) + 3  # the data's label channels, then the photo's
    return init_normal(MultiscaleDiscriminator(channels, training.ndf, training.n_layers_d, options.num_d,
                                               options.norm_d), xavier=True)


def _ground_truth(run: Run) -> TeacherOutputs:
    """``single`` data: the recipe teacher's outputs, the targets (kept per input with cache_targets)."""
    if "ground_truth" not in run.shared:
        reference = run.teacher.model
        run.shared["ground_truth"] = TeacherOutputs(reference, FeatureTaps(reference, []),
                                                    run.recipe.training.cache_targets)
    return run.shared["ground_truth"]


def _train_adversarial(run: Run, stage: str, settings: StageSettings, generator: nn.Module,
                       discriminator: nn.Module, lambda_recon: float,
                       distill: Callable[[], torch.Tensor] | None = None, teacher: nn.Module | None = None,
                       batch_size: int | None = None) -> None:
    """The pix2pix teacher's and the distiller's step: the discriminator learns the target against the output
    (beside the input for paired and single data); the generator minimises GAN + lambda_recon * L1 (to the
    target, or for unpaired data to ``teacher``'s output) + the distillation term."""
    recipe, training, processes = run.recipe, run.recipe.training, run.processes
    layout, batch_size = recipe.data.layout, batch_size or training.batch_size

    def training_step(step: int) -> tuple[dict, dict]:
        batch = run.data.batch(step, batch_size, training.seed, processes.rank, processes.world_size)
        inputs = batch.inputs.to(processes.device)
        if layout == "single":
            targets = _ground_truth(run)(inputs, batch.keys)[0]
        else:
            targets = batch.targets.to(processes.device)
        output = generator(inputs)
        if teacher is not None:
            with torch.no_grad():
                teacher_output = teacher(inputs)  # and its taps' features
        distilled = distill() if distill else None
        if layout == "unpaired":  # the discriminator sees domain-B images; L1 to the teacher's output
            fake_seen, real_seen, recon_target = output, targets, teacher_output
        else:
            fake_seen, real_seen, recon_target = torch.cat((inputs, output), 1), torch.cat((inputs, targets), 1), \
                targets
        loss_d = 0.5 * (gan_loss(training.gan_mode, discriminator(fake_seen.detach()), False)
                        + gan_loss(training.gan_mode, discriminator(real_seen), True))
        with frozen(discriminator):
            loss_gan = training.lambda_gan * gan_loss(training.gan_mode, discriminator(fake_seen), True, False)
        loss_recon = lambda_recon * F.l1_loss(output, recon_target)
        terms = {"D": loss_d, "G_gan": loss_gan, "G_recon": loss_recon}
        loss_g = loss_gan + loss_recon
        if distilled is not None:
            terms["G_distill"] = distilled
            loss_g = loss_g + distilled
        return {"D": loss_d, "G": loss_g}, terms

    name = "teacher" if stage == "teacher" else "student"
    run.train(stage, settings, {name: generator, "discriminator": discriminator},
              {"G": [name], "D": ["discriminator"]}, training_step)


def _train_gaugan(run: Run, stage: str, settings: StageSettings, generator: nn.Module, discriminator: nn.Module,
                  distill: Callable[[], torch.Tensor] | None = None, teacher: nn.Module | None = None,
                  batch_size: int | None = None) -> None:
    """SPADE's ``optimize_parameters`` (``gzoo.compress.gaugan``): the generator's update, with the distillation
    term after ``teacher``'s forward pass when distilling, then the discriminator's."""
    recipe, training, processes = run.recipe, run.recipe.training, run.processes
    options, batch_size = recipe.gaugan, batch_size or training.batch_size
    if "gaugan_perceptual" not in run.shared:
        run.shared["gaugan_perceptual"] = perceptual_network(options.perceptual).to(processes.device)
    gaugan = GauGan(discriminator, run.shared["gaugan_perceptual"], training.gan_mode, training.lambda_gan,
                    options.lambda_feat, options.lambda_vgg)

    def training_step(step: int) -> Any:
        batch = run.data.batch(step, batch_size, training.seed, processes.rank, processes.world_size)
        labels = batch.inputs.to(processes.device)

        def distill_terms() -> dict[str, torch.Tensor]:
            with torch.no_grad():
                teacher(labels)  # its taps' features
            return {"G_distill": distill()}

        yield from gaugan.updates(generator, labels, batch.targets.to(processes.device),
                                  distill_terms if distill is not None else None)

    name = "teacher" if stage == "teacher" else "student"
    run.train(stage, settings, {name: generator, "discriminator": discriminator},
              ttur_groups([name], ["discriminator"], settings.lr or training.lr, options.ttur,
                          (training.beta1, training.beta2)),
              training_step)


def _train_cycle_gan(run: Run, teacher: CatInceptionGenerator, length: StageSettings, batch_size: int) -> None:
    """CycleGAN's ``optimize_parameters``: both generators (GAN + cycle + identity), then both discriminators
    (real against a pooled fake)."""
    recipe, training, processes, settings = run.recipe, run.recipe.training, run.processes, run.recipe.stages.teacher
    shape = (3, recipe.data.crop_size, recipe.data.crop_size)
    pair = CycleGan(teacher, init_normal(_new_teacher(settings)), _discriminator(recipe, settings.norm),
                    _discriminator(recipe, settings.norm), ImagePool(settings.pool_size, shape),
                    ImagePool(settings.pool_size, shape), training.gan_mode, settings.lambda_cycle,
                    settings.lambda_identity)

    def training_step(step: int) -> Any:
        batch = run.data.batch(step, batch_size, training.seed, processes.rank, processes.world_size)
        rng = random.Random(f"{training.seed}:pool:{step}:{processes.rank}")
        yield from pair.updates(batch.inputs.to(processes.device), batch.targets.to(processes.device), rng)

    modules = {"teacher": teacher, "teacher_b": pair.backward, "discriminator_a": pair.disc_a,
               "discriminator_b": pair.disc_b, "pool_a": pair.pool_a, "pool_b": pair.pool_b}
    run.train("teacher", length, modules, {"G": ["teacher", "teacher_b"], "D": ["discriminator_a",
                                                                                   "discriminator_b"]},
              training_step)


register_method(Method(
    name="cat", teachers=(ARCH, "resnet_generator", "mobile_resnet_generator", "sub_mobile_resnet_generator",
                          SPADE_ARCH, "spade_generator"),
    stages=_stages, run={"teacher": _teacher, "prune": _prune, "distill": _distill, "export": _export},
    sections={"stages": Stages, "gaugan": GauGanSettings}, training=CatTrainingSettings, check=_check,
    check_inputs=_check_inputs, check_model=_check_model,
    teacher_hint="give a trained cat_inception_generator, or a generator whose outputs are the targets of single "
                 "data together with a 'stages.teacher' section"))
