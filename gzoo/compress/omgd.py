"""OMGD, online multi-granularity distillation (Ren et al., ICCV 2021, bytedance/OMGD), over the shared pipeline.

pix2pix setting (the original ``--distiller multiteacher``), one ``distill`` stage then ``export``: a wide
teacher (the student's family at ngf 64) and a deep one (the student's width with extra expansion blocks:
``omgd_deep_unet_generator`` / ``omgd_deep_mobile_resnet_generator``) are trained from scratch in the same steps
as the student, each by lambda_gan * GAN + lambda_recon * L1 to the ground truth against one discriminator whose
first ``n_share`` blocks the two teachers share (hinge); the discriminator and the teachers are updated every
``n_dis`` steps. The student never sees the ground truth nor the discriminator: each step it learns from the
teachers' detached outputs, per teacher

    lambda_ssim * (1 - SSIM) + lambda_style * sum over 4 taps of L1(Gram) + lambda_feature * L1(tap 2)
    + lambda_tv * total variation,

plus lambda_cd * channel distillation from the wide teacher at its 4 taps (student feature -> 1x1 conv, BN,
ReLU -> global average pool; MSE to the teacher's pooled feature). All of a step's terms come from one forward
of the weights before the step, as in the original ``optimize_parameters``.

``teachers.wide_from`` names a pretrained wide teacher instead (``teacher``: the recipe's teacher, or a model
directory): it is frozen and the student learns from it, and from a deep teacher when the recipe trains one.
With ``single`` data (the builtin photos) the ground truth is the recipe teacher's output.

A ``best`` section keeps the best-scored student, as the original's trainer does (``evaluate_model`` every
``--save_latest_freq`` iterations, ``is_best``): the student is scored on the held-out inputs after every
``best.eval_every`` steps and after the last one (FID against ``best.reference``, DRN mIoU against
``best.labels``, or, for ``single`` data, PSNR against the recipe's teacher), the weights of the best score so far
are kept in the checkpoint, and the best scored student is the one exported. Without it, the last student is.

CycleGAN setting (the original's ``--distiller cycleganbest``, unpaired data, a ``cycle`` section): one teacher
pair (the student's family at ``teachers.wide_ngf``; no deep teacher) trained as CycleGAN (``gzoo.compress.cyclegan``:
GAN + lambda_cycle * cycle + lambda_cycle * lambda_identity * identity L1, image pools). After every
``cycle.eval_every`` teacher steps and after the last one, the teacher A -> B is scored by FID on the held-out
inputs against ``cycle.reference`` (domain B's statistics); the weights of the best so far then teach the student
for ``n_dis * eval_every`` steps, by the student terms above from that one teacher (channel distillation
included), with no ground truth and no discriminator; then the teachers go on. The student's learning rate is the
teacher's at the end of the phase before (the original's schedulers step per teacher epoch). The student is scored
by the same FID after every ``eval_every`` of its steps (``n_dis`` times a phase, the last at its end, as the
original's ``evaluate_student_model``); the best scored student is the one exported. With ``teachers.wide_from``
a pretrained A -> B generator is the teacher instead: frozen, so no pair is trained and no teacher scored; the
student gets the phases it would get beside the pair (the same steps, batches and learning rates), scored alike.
"""

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from gzoo.compress import perceptual
from gzoo.compress.cyclegan import CycleGan, ImagePool
from gzoo.compress.data import find_splits, held_out_inputs
from gzoo.compress.engine import FeatureTaps, Schedule, StepResult, TrainingSettings, frozen
from gzoo.compress.losses import SsimSide, gan_loss, ssim
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.pipeline import Run
from gzoo.compress.recipe import Recipe, check_stage_length, one_of
from gzoo.compress.settings import StageSettings
from gzoo.compress.transfer import init_normal
from gzoo.data.modeldir import read_config, sha256_of, weights_path
from gzoo.errors import GzooError
from gzoo.evaluation import HeldOutScorer, check_label_maps
from gzoo.models import create_model, load_model_dir, signed_range
from gzoo.models.layers import conv_bias, norm_layer
from gzoo.models.patchgan import PatchGanDiscriminator

# The originals' mapping layers (base_multiteacher_distiller.py) and their widths in units of ngf.
TAPS = {"resnet": ("model.9", "model.12", "model.15", "model.18"),
        "unet": ("model.model.1.model.3.model.0", "model.model.1.model.3.model.3.model.3.model.0",
                 "model.model.1.model.3.model.3.model.4", "model.model.1.model.4")}
TAP_WIDTHS = {"resnet": (4, 4, 4, 4), "unet": (2, 8, 16, 4)}
ARCHS = {"resnet": ("mobile_resnet_generator", "omgd_deep_mobile_resnet_generator"),
         "unet": ("unet_generator", "omgd_deep_unet_generator")}
DEFAULT_NORM = {"resnet": "instance", "unet": "batch"}
FEATURE_TAP = 1  # relu2_2 for VGG16: the feature term's layer
N_LAYERS_D = 3  # the CycleGAN setting's discriminators: options' --n_layers_D default (--netD n_layers)
SCORE_BATCH = 8  # held-out images per forward pass when a generator is scored (the score does not depend on it)
SCORE_METRICS = ("fid", "miou", "psnr")  # HeldOutScorer's, each lower is better (minus mIoU, minus PSNR)


# --- the recipe sections ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentSettings:
    family: str = "resnet"  # resnet (mobile ResNet-9, the original's mobile_resnet_9blocks) | unet (unet_256)
    ngf: int = 16
    norm: str | None = None  # None: the family's (instance for resnet, batch for unet), as the scripts set


@dataclass(frozen=True)
class TeacherSettings:
    wide_ngf: int = 64
    deep_ngf: int | None = 16  # null: no deep teacher
    wide_from: str | None = None  # "teacher" (the recipe's) or a model directory: a frozen pretrained wide teacher


@dataclass(frozen=True)
class OmgdTrainingSettings(TrainingSettings):
    gan_mode: str = "hinge"
    ndf: int = 128
    n_share: int = 0  # the discriminator's first n_share of 5 blocks are shared by the teachers
    n_dis: int = 1  # the discriminator and teachers are updated every n_dis steps, the student every step
    lambda_gan: float = 1.0
    lambda_recon: float = 100.0
    lambda_ssim: float = 10.0  # the original's --AGD_weights, in order
    lambda_style: float = 1e4
    lambda_feature: float = 10.0
    lambda_tv: float = 1e-5
    lambda_cd: float = 0.0  # --lambda_CD
    perceptual: str = "vgg16"  # vgg16 | inception (the FID trunk, offline; see gzoo.compress.perceptual)
    perceptual_normalization: str = "unit"  # OMGD feeds VGG (x + 1) / 2 without ImageNet's mean and std
    # Keep a frozen generator's outputs (the recipe teacher's ground truth, a pretrained wide teacher) per
    # distinct training input: exact, and possible only when inputs repeat (data.load_size == data.crop_size).
    cache_frozen: bool = False


@dataclass(frozen=True)
class CycleSettings:
    """The CycleGAN setting's own keys (unpaired data only)."""

    eval_every: int  # teacher steps between best-FID evaluations: --save_epoch_freq epochs, in steps
    reference: str | None = None  # FID reference of domain B (.npz statistics or a folder); None: evaluate.reference
    max_images: int | None = None  # held-out inputs the FID is computed on (None: all of them)
    lambda_cycle: float = 10.0  # cycle_gan_model's lambda_A = lambda_B
    lambda_identity: float = 0.5
    pool_size: int = 50


@dataclass(frozen=True)
class BestSettings:
    """The pix2pix setting's choice of the exported student: the best scored on the held-out inputs."""

    eval_every: int  # student steps between scores: the original's --save_latest_freq iterations, in steps
    metric: str = "fid"  # fid (against reference) | miou (segmenter + labels) | psnr (against the recipe's teacher)
    reference: str | None = None  # fid: real statistics .npz or an image folder; None: evaluate.reference
    max_images: int | None = None  # held-out inputs scored (None: all of them)
    segmenter: str | None = None  # miou: DRN-D-105 Cityscapes weights; None: evaluate.segmenter
    labels: str | None = None  # miou: train-id maps named like the held-out inputs; None: evaluate.labels


@dataclass(frozen=True)
class Stages:
    distill: StageSettings | None = None


def _check(recipe: Recipe) -> None:
    student, teachers, training = recipe.student, recipe.teachers, recipe.training
    one_of(student.family, tuple(TAPS), "student.family")
    if student.norm is not None:
        one_of(student.norm, ("instance", "instance_affine", "batch"), "student.norm")
    one_of(training.gan_mode, ("hinge", "lsgan", "vanilla"), "training.gan_mode")
    one_of(training.perceptual, perceptual.FOUR_TAP_NETWORKS, "training.perceptual")
    one_of(training.perceptual_normalization, perceptual.NORMALIZATIONS, "training.perceptual_normalization")
    if _cycle_setting(recipe):
        _check_cycle(recipe)
    elif recipe.cycle is not None:
        raise GzooError("recipe: the 'cycle' section is OMGD's CycleGAN setting, for unpaired data; remove it or "
                        "set data.layout: unpaired")
    if recipe.best is not None:
        _check_best(recipe)
    for name in ("ndf", "n_dis"):
        if getattr(training, name) < 1:
            raise GzooError(f"recipe: 'training.{name}' must be at least 1")
    if not 0 <= training.n_share <= 5:
        raise GzooError("recipe: 'training.n_share' must be between 0 and 5 (the discriminator has 5 blocks)")
    if training.cache_frozen and recipe.data.load_size != recipe.data.crop_size:
        raise GzooError("recipe: training.cache_frozen needs data.load_size equal to data.crop_size (a random crop "
                        "rarely repeats, so there would be nothing to reuse)")
    if training.perceptual == "inception" and recipe.data.crop_size < perceptual.INCEPTION_MIN_SIZE:
        raise GzooError(f"recipe: the inception feature network needs data.crop_size of at least "
                        f"{perceptual.INCEPTION_MIN_SIZE}")
    if min(recipe.student.ngf, teachers.wide_ngf, teachers.deep_ngf or 1) < 1:
        raise GzooError("recipe: generator widths (student.ngf, teachers.wide_ngf, teachers.deep_ngf) must be at "
                        "least 1")
    if student.family == "unet" and recipe.data.crop_size % 256:
        raise GzooError(f"recipe: the unet family (unet_256, 8 downsamplings) needs data.crop_size a multiple of "
                        f"256, not {recipe.data.crop_size}")
    if teachers.wide_from not in (None, "teacher") and not Path(teachers.wide_from).is_dir():
        raise GzooError(f"recipe: teachers.wide_from {teachers.wide_from!r} is neither 'teacher' (the recipe's "
                        "teacher) nor a model directory; to use a zoo model, make it the recipe's teacher")
    if recipe.stages.distill is None:
        raise GzooError("recipe: omgd needs a 'stages.distill' section (its epochs or steps)")
    check_stage_length("distill", recipe.stages.distill)


def _cycle_setting(recipe: Recipe) -> bool:
    return recipe.data.layout == "unpaired" and not recipe.data.builtin  # builtin photos are single data


def _check_cycle(recipe: Recipe) -> None:
    cycle, teachers = recipe.cycle, recipe.teachers
    if cycle is None:
        raise GzooError("recipe: OMGD on unpaired data (its CycleGAN setting) needs a 'cycle' section with eval_every, "
                        "the teacher steps between best-FID evaluations (see recipes/omgd/horse2zebra-resnet.yaml)")
    if recipe.student.family != "resnet":
        raise GzooError("recipe: OMGD's CycleGAN setting distils mobile ResNets only; set student.family: resnet")
    if teachers.deep_ngf is not None:
        raise GzooError("recipe: OMGD's CycleGAN setting trains one teacher pair at teachers.wide_ngf (or takes a "
                        "pretrained one, teachers.wide_from) and no deep teacher; set teachers.deep_ngf: null")
    if cycle.eval_every < 1 or cycle.pool_size < 0:
        raise GzooError("recipe: 'cycle.eval_every' must be at least 1 and 'cycle.pool_size' at least 0")
    if not (cycle.reference or recipe.evaluate.reference):
        raise GzooError("recipe: OMGD's CycleGAN setting picks its best teacher by FID: set cycle.reference (or "
                        "evaluate.reference) to domain B's statistics (.npz) or a folder of real B images")
    if cycle.max_images is not None and cycle.max_images < 2:
        raise GzooError("recipe: 'cycle.max_images' must be at least 2 (FID needs two images to estimate a "
                        "covariance)")


def _single(recipe: Recipe) -> bool:
    """Whether the recipe teacher's outputs are the ground truth (single data, the builtin photos)."""
    return recipe.data.layout == "single" or recipe.data.builtin is not None


def _check_best(recipe: Recipe) -> None:
    best, evaluate = recipe.best, recipe.evaluate
    if _cycle_setting(recipe):
        raise GzooError("recipe: the 'best' section is for OMGD's pix2pix setting; the CycleGAN setting scores its "
                        "student every cycle.eval_every steps and exports the best already: remove it")
    one_of(best.metric, SCORE_METRICS, "best.metric")
    if best.eval_every < 1:
        raise GzooError(f"recipe: 'best.eval_every' must be at least 1 (student steps between two scores), not "
                        f"{best.eval_every}")
    least = 2 if best.metric == "fid" else 1  # FID estimates a covariance
    if best.max_images is not None and best.max_images < least:
        raise GzooError(f"recipe: 'best.max_images' must be at least {least} for best.metric {best.metric}")
    if best.metric == "fid" and not (best.reference or evaluate.reference):
        raise GzooError("recipe: best.metric fid needs best.reference (or evaluate.reference): real statistics "
                        "(.npz) or a folder of real target images")
    if best.metric == "miou" and not ((best.segmenter or evaluate.segmenter) and (best.labels or evaluate.labels)):
        raise GzooError("recipe: best.metric miou needs best.segmenter and best.labels (or evaluate.segmenter and "
                        "evaluate.labels): DRN-D-105 weights and train-id maps named like the held-out inputs")
    if best.metric == "psnr" and not _single(recipe):
        raise GzooError("recipe: best.metric psnr compares the student with the recipe's teacher, the ground truth "
                        "of single data only; with paired data score by fid or miou")


def _score_references(recipe: Recipe) -> dict[str, str | None]:
    """What the best section's metric compares with (HeldOutScorer's keywords), the evaluate section's by default."""
    best, evaluate = recipe.best, recipe.evaluate
    if best.metric == "fid":
        return {"reference": best.reference or evaluate.reference}
    if best.metric == "miou":
        return {"segmenter": best.segmenter or evaluate.segmenter, "labels": best.labels or evaluate.labels}
    return {}


def _check_best_inputs(recipe: Recipe) -> None:
    """The best section's reference, or segmenter and a label map for every held-out input, before the run."""
    references = _score_references(recipe)
    for key, path in references.items():
        if key != "labels" and not Path(path).exists():
            raise GzooError(f"{path}: no such file; the pix2pix setting scores its student against it (best.{key}, "
                            f"else evaluate.{key})")
    labels = references.get("labels")
    if labels is None:
        return
    option = "best.labels (else evaluate.labels)"
    if recipe.data.builtin:  # the crops are made in the run: only the folder can be checked now
        check_label_maps([], Path(labels), option)
        return
    held_out = find_splits(recipe.data, Path(recipe.data.root)).held_out[:recipe.best.max_images]
    check_label_maps([p.name for p in held_out], Path(labels), option, "held-out input")


def _check_inputs(recipe: Recipe) -> None:
    """The feature network must be at hand before the run starts (VGG16's weights are fetched once online)."""
    perceptual.check_available(recipe.training.perceptual,
                               hint="set training.perceptual: inception (the FID Inception trunk, offline)")
    if _cycle_setting(recipe) and not Path(_fid_reference(recipe)).exists():
        raise GzooError(f"{_fid_reference(recipe)}: no such FID reference; the CycleGAN setting scores its teacher "
                        "against it (cycle.reference, else evaluate.reference)")
    if recipe.best is not None:
        _check_best_inputs(recipe)
    source = recipe.teachers.wide_from
    if source not in (None, "teacher"):  # a model directory: its architecture, built without weights
        config = read_config(Path(source))
        with torch.device("meta"):
            model = signed_range(create_model(config["arch"], **config.get("arch_args", {})))
        _check_wide(recipe, f"{source} ({config['arch']})", model)


def _check_model(recipe: Recipe, model: nn.Module) -> None:
    """The recipe's teacher as the pretrained wide teacher (``teachers.wide_from: teacher``)."""
    if recipe.teachers.wide_from == "teacher":
        _check_wide(recipe, recipe.teacher, model)


def _check_wide(recipe: Recipe, name: str, model: nn.Module) -> None:
    """A pretrained wide teacher must map a 3-channel image of the crop size to one of the same shape (one pass,
    on meta tensors for a model directory) and, for channel distillation, have the student family's layers."""
    size = recipe.data.crop_size
    shape = (1, 3, size, size)
    parameter = next(model.parameters(), None)
    try:
        with torch.no_grad():
            output = model.eval()(torch.zeros(shape, device=parameter.device if parameter is not None else None))
        problem = None if tuple(output.shape) == shape else f"gives {tuple(output.shape)} for a {shape} input"
    except Exception as err:  # any architecture's refusal of the input
        problem = f"cannot take a {shape} input ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    if problem:
        raise GzooError(f"teachers.wide_from: {name} {problem}; the wide teacher must be an image-to-image "
                        f"generator of 3 channels at data.crop_size")
    family = recipe.student.family
    layers = dict(model.named_modules())
    missing = [tap for tap in TAPS[family] if tap not in layers]
    if recipe.training.lambda_cd > 0 and missing:
        raise GzooError(f"teachers.wide_from: {name} has no layer {missing[0]} to distil channels from (it is not "
                        f"a {family} generator); set training.lambda_cd: 0")


def _fid_reference(recipe: Recipe) -> str:
    return recipe.cycle.reference or recipe.evaluate.reference


# --- the networks -----------------------------------------------------------------------------------------------

class SharedPatchGan(nn.Module):
    """OMGD's ``MultiNLayerDiscriminator``: five 4x4 conv blocks (ndf, 2, 4, 8 ndf, 1; strides 2, 2, 2, 1, 1),
    one copy per teacher of each block except the first ``n_share``, which the teachers share."""

    def __init__(self, channels: int, ndf: int, n_share: int, norm: str, teachers: int = 2) -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        shapes = ((channels, ndf, 2), (ndf, 2 * ndf, 2), (2 * ndf, 4 * ndf, 2), (4 * ndf, 8 * ndf, 1), (8 * ndf, 1, 1))

        def block(index: int) -> nn.Module:
            source, width, stride = shapes[index]
            if index == 4:
                return nn.Conv2d(source, width, 4, stride, 1)
            layers = [nn.Conv2d(source, width, 4, stride, 1, bias=bias if index else True)]
            layers += [make_norm(width)] if index else []
            return nn.Sequential(*layers, nn.LeakyReLU(0.2, True))

        self.n_share = n_share
        self.blocks = nn.ModuleList(nn.ModuleList(block(i) for _ in range(1 if i < n_share else teachers))
                                    for i in range(len(shapes)))

    def forward(self, x: torch.Tensor, teacher: int, start: int = 0) -> torch.Tensor:
        """Teacher ``teacher``'s prediction; ``start``: x is the output of the first ``start`` blocks (``shared``)."""
        for copies in self.blocks[start:]:
            x = copies[min(teacher, len(copies) - 1)](x)
        return x

    def shared(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the blocks the teachers share: computed once, it serves every teacher's ``forward`` with
        ``start=n_share`` (the same numbers as the whole pass per teacher)."""
        for copies in self.blocks[:self.n_share]:
            x = copies[0](x)
        return x


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics cover the global batch of a torchrun job (gloo or NCCL), so the
    channel distillation of 2 processes equals that of 1 on the same batch; alone, it is nn.BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([x.numel() / x.size(1)], device=x.device)
        moments = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])
        moments = dist_fn.all_reduce(moments)  # differentiable: gradients flow to every process's share
        channels = x.size(1)
        total = moments[-1]
        mean = moments[:channels] / total
        var = moments[channels:2 * channels] / total - mean ** 2
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * total / (total - 1), self.momentum)
            self.num_batches_tracked += 1
        shape = (1, channels, 1, 1)
        return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps) * self.weight.view(shape) \
            + self.bias.view(shape)


def _connectors(student_widths: list[int], teacher_widths: list[int]) -> nn.ModuleList:
    """The original's ``build_feature_connector`` per tap: 1x1 conv (student -> teacher width), BN, ReLU."""
    return init_normal(nn.ModuleList(
        nn.Sequential(nn.Conv2d(s, t, 1, bias=False), GlobalBatchNorm2d(t), nn.ReLU(True))
        for s, t in zip(student_widths, teacher_widths, strict=True)))


def _tap_widths(model: nn.Module, family: str, size: int) -> list[int]:
    """Channels of a generator's tap outputs, read off one forward pass in eval mode (a pretrained teacher)."""
    taps = FeatureTaps(model, list(TAPS[family]))  # its layers were checked before the run (_check_wide)
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        model.train(training)
        taps.remove()
    return [f.shape[1] for f in taps.features()]


def _norm(recipe: Recipe) -> str:
    return recipe.student.norm or DEFAULT_NORM[recipe.student.family]


def _generator(recipe: Recipe, ngf: int, deep: bool) -> nn.Module:
    return init_normal(create_model(ARCHS[recipe.student.family][deep], ngf=ngf, norm=_norm(recipe)))


class FrozenOutputs:
    """A frozen generator's output and pooled tap features for a batch; with ``cache``, once per distinct input."""

    def __init__(self, model: nn.Module, taps: FeatureTaps | None, cache: bool) -> None:
        self.model, self.taps, self.cache = model.eval().requires_grad_(False), taps, cache
        self.kept: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def _compute(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.no_grad():
            output = self.model(inputs)
        pooled = [f.mean((2, 3)) for f in self.taps.features()] if self.taps else []
        return output, pooled

    def __call__(self, inputs: torch.Tensor, keys: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.cache:
            return self._compute(inputs)
        missing = [i for i, key in enumerate(keys) if key not in self.kept]
        if missing:
            output, pooled = self._compute(inputs[missing])
            for row, index in enumerate(missing):
                self.kept[keys[index]] = (output[row].clone(), [p[row].clone() for p in pooled])
        rows = [self.kept[key] for key in keys]
        return torch.stack([r[0] for r in rows]), [torch.stack([r[1][t] for r in rows]) for t in range(len(rows[0][1]))]


# --- the student's objective ------------------------------------------------------------------------------------

def student_terms(training: OmgdTrainingSettings, features: nn.Module, student_output: torch.Tensor,
                  teacher_outputs: list[torch.Tensor], world_size: int = 1) -> dict[str, torch.Tensor]:
    """The student's per-teacher terms, summed over the teachers (the originals' ``backward_G_student``).

    The teacher outputs must be detached. The total variation is a sum over the batch, so in a torchrun job each
    process's share is scaled by the number of processes: averaged over them it is the global batch's sum.
    What is the student's alone is computed once for all the teachers (its features, their Gram matrices, its
    SSIM statistics, its total variation): the terms are the same numbers as from a computation per teacher.
    """
    student_features = features(student_output)
    student_grams = [perceptual.gram_matrix(f) for f in student_features]
    student_side = SsimSide(student_output)
    tv = training.lambda_tv * world_size * perceptual.total_variation(student_output)
    terms = {name: student_output.new_zeros(()) for name in ("G_ssim", "G_style", "G_feature", "G_tv")}
    for teacher_output in teacher_outputs:
        with torch.no_grad():
            teacher_features = features(teacher_output)
            teacher_grams = [perceptual.gram_matrix(f) for f in teacher_features]
        terms["G_ssim"] = terms["G_ssim"] + training.lambda_ssim * (
            1 - ssim(student_output, teacher_output, x_side=student_side))
        terms["G_style"] = terms["G_style"] + training.lambda_style * sum(
            F.l1_loss(s, t) for s, t in zip(student_grams, teacher_grams, strict=True))
        terms["G_feature"] = terms["G_feature"] + training.lambda_feature * F.l1_loss(
            student_features[FEATURE_TAP], teacher_features[FEATURE_TAP])
        terms["G_tv"] = terms["G_tv"] + tv
    return terms


def channel_distillation(student_features: list[torch.Tensor], teacher_pooled: list[torch.Tensor],
                         connectors: nn.ModuleList) -> torch.Tensor:
    """Sum over taps of MSE between the globally pooled connector(student feature) and the teacher's pooled one."""
    return sum(F.mse_loss(connector(s).mean((2, 3)), t.detach())
               for s, t, connector in zip(student_features, teacher_pooled, connectors, strict=True))


# --- the stage --------------------------------------------------------------------------------------------------

@dataclass
class Teachers:
    """What the student and the teachers of a run learn from."""

    trained: dict[str, nn.Module] = field(default_factory=dict)  # "wide" / "deep" -> generator trained online
    frozen_wide: FrozenOutputs | None = None  # a pretrained wide teacher
    wide_taps: FeatureTaps | None = None  # on the wide teacher (trained or frozen), for channel distillation
    wide_widths: list[int] = field(default_factory=list)
    ground_truth: FrozenOutputs | None = None  # single data: the recipe teacher's outputs


def _pretrained_wide(run: Run) -> nn.Module:
    """The generator ``teachers.wide_from`` names, on the run's device, in [-1, 1] as the data (frozen by
    ``FrozenOutputs``)."""
    source = run.recipe.teachers.wide_from
    if source == "teacher":
        return run.teacher.model
    return signed_range(load_model_dir(Path(source))).to(run.processes.device)


def _teachers(run: Run) -> Teachers:
    recipe, settings, training = run.recipe, run.recipe.teachers, run.recipe.training
    family = recipe.student.family
    teachers = Teachers()
    if settings.wide_from is None:
        wide = teachers.trained["wide"] = _generator(recipe, settings.wide_ngf, deep=False)
        teachers.wide_widths = [w * settings.wide_ngf for w in TAP_WIDTHS[family]]
    else:
        wide = _pretrained_wide(run)
        if training.lambda_cd > 0:
            teachers.wide_widths = _tap_widths(wide, family, recipe.data.crop_size)
    if training.lambda_cd > 0:
        teachers.wide_taps = FeatureTaps(wide, list(TAPS[family]))
    if settings.wide_from is not None:
        teachers.frozen_wide = FrozenOutputs(wide, teachers.wide_taps, training.cache_frozen)
    if recipe.data.layout == "single":  # one pass serves both when the wide teacher is the recipe's
        teachers.ground_truth = teachers.frozen_wide if wide is run.teacher.model else \
            FrozenOutputs(run.teacher.model, None, training.cache_frozen)
    if settings.deep_ngf is not None:
        teachers.trained["deep"] = _generator(recipe, settings.deep_ngf, deep=True)
    return teachers


def _distill(run: Run, results: dict) -> dict:
    if _cycle_setting(run.recipe):
        return _distill_cycle(run, results)
    recipe, training, processes = run.recipe, run.recipe.training, run.processes
    family = recipe.student.family
    teachers = _teachers(run)
    student = _generator(recipe, recipe.student.ngf, deep=False)
    student_best = copy.deepcopy(student) if recipe.best else None  # before the taps: the copy has no hooks
    modules: dict[str, nn.Module] = {"student": student}
    groups: dict[str, list[str]] = {"G_student": ["student"]}
    student_taps = FeatureTaps(student, list(TAPS[family])) if training.lambda_cd > 0 else None
    if student_taps:
        student_widths = [w * recipe.student.ngf for w in TAP_WIDTHS[family]]
        modules["connectors"] = _connectors(student_widths, teachers.wide_widths)
        groups["G_student"].append("connectors")
    order = list(teachers.trained)  # "wide" before "deep": the discriminator's branches 0 and 1
    for name, generator in teachers.trained.items():
        modules[f"teacher_{name}"] = generator
        groups[f"G_{name}"] = [f"teacher_{name}"]
    if order:
        channels = 6  # pix2pix's discriminator sees the input beside the output
        modules["discriminator"] = init_normal(SharedPatchGan(channels, training.ndf, training.n_share, _norm(recipe),
                                                              teachers=2 if len(order) == 2 else 1))
        groups["D"] = ["discriminator"]
    features = perceptual.perceptual_network(training.perceptual, training.perceptual_normalization) \
        .to(processes.device)
    discriminator = modules.get("discriminator")
    best = recipe.best
    if best is not None:  # scored after every eval_every steps and the last; the best scored is exported
        after = evaluation_steps(run.schedule(recipe.stages.distill).total, best.eval_every)
        evaluations = {done: index for index, done in enumerate(after)}
        modules |= {"student_best": student_best, "student_score": BestScores(len(after))}
        evaluate = HeldOutScoring(run, best.metric, best.max_images, **_score_references(recipe))

    def training_step(step: int) -> StepResult | Iterator[StepResult]:
        updates = student_and_teachers(step)
        if best is None or step + 1 not in evaluations:
            return updates
        return then_scored(updates, evaluations[step + 1])

    def then_scored(updates: StepResult, index: int) -> Iterator[StepResult]:
        yield updates
        # after the update, as the original's trainer scores after optimize_parameters
        score = evaluate(student, index, modules["student_score"], student_best)
        yield {}, {f"{best.metric}_student": torch.tensor(as_measured(best.metric, score))}

    def student_and_teachers(step: int) -> StepResult:
        batch = run.data.batch(step, training.batch_size, training.seed, processes.rank, processes.world_size)
        inputs = batch.inputs.to(processes.device)
        guides, wide_pooled = [], []
        if teachers.frozen_wide is not None:
            frozen_output, wide_pooled = teachers.frozen_wide(inputs, batch.keys)
            guides.append(frozen_output)
        if teachers.ground_truth is None:
            targets = batch.targets.to(processes.device)
        else:  # a frozen wide teacher that is the recipe's gives the ground truth too
            targets = frozen_output if teachers.ground_truth is teachers.frozen_wide else \
                teachers.ground_truth(inputs, batch.keys)[0]
        outputs = {name: teachers.trained[name](inputs) for name in order}
        if teachers.wide_taps and "wide" in outputs:
            with torch.no_grad():  # targets only (channel_distillation detaches them)
                wide_pooled = [f.mean((2, 3)) for f in teachers.wide_taps.features()]
        guides += [outputs[name].detach() for name in order]
        output = student(inputs)
        terms = student_terms(training, features, output, guides, processes.world_size)
        if student_taps:
            terms["G_cd"] = training.lambda_cd * channel_distillation(student_taps.features(), wide_pooled,
                                                                      modules["connectors"])
        objectives = {"G_student": sum(terms.values())}
        if order and (step + 1) % training.n_dis == 0:  # the original counts steps from 1
            # the real pair through the blocks the teachers share once, not once per teacher
            real = discriminator.shared(torch.cat((inputs, targets), 1))
            loss_d = inputs.new_zeros(())
            for index, name in enumerate(order):
                fake = torch.cat((inputs, outputs[name]), 1)
                loss_d = loss_d + 0.5 * (gan_loss(training.gan_mode, discriminator(fake.detach(), index), False)
                                         + gan_loss(training.gan_mode, discriminator(real, index,
                                                                                    discriminator.n_share), True))
                with frozen(discriminator):
                    loss_gan = training.lambda_gan * gan_loss(training.gan_mode, discriminator(fake, index), True,
                                                              False)
                loss_recon = training.lambda_recon * F.l1_loss(outputs[name], targets)
                objectives[f"G_{name}"] = loss_gan + loss_recon
                terms |= {f"G_gan_{name}": loss_gan, f"G_recon_{name}": loss_recon}
            objectives["D"] = loss_d
            terms["D"] = loss_d
        return objectives, terms

    try:
        run.train("distill", recipe.stages.distill, modules, groups, training_step)
    finally:
        for taps in (student_taps, teachers.wide_taps):
            if taps:
                taps.remove()
    result = {"teachers": {name: _describe(recipe, name) for name in ("wide", "deep")
                           if name in teachers.trained or (name == "wide" and teachers.frozen_wide)}}
    if best is None:
        return result
    scored = {"metric": best.metric, "held_out_images": len(run.data.splits.held_out[:best.max_images])}
    return result | {"student_score": scored | scores_summary(run.final_state("distill")["student_score"], after,
                                                               "student", best.metric, exported=True)}


def evaluation_steps(total: int, every: int) -> list[int]:
    """The steps done at each evaluation: every ``every``-th of ``total`` and the last."""
    ends = list(range(every, total + 1, every))
    return ends if ends and ends[-1] == total else [*ends, total]


# --- the CycleGAN setting ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """Where one step of the CycleGAN setting's timeline falls."""

    student: bool
    step: int  # the teacher pair's step, or the student's counted over all its phases
    index: int  # the evaluation this step follows (student) or leads to (teacher)
    clock: int  # the teacher step whose learning rate applies


@dataclass(frozen=True)
class Alternation(Schedule):
    """The teacher pair's ``constant`` + ``decay`` steps with a student phase of ``student_steps`` after every
    ``every`` teacher steps and after the last (the original evaluates at every ``save_epoch_freq``-th epoch and
    at the end). The learning rate follows the teacher's steps; a student phase keeps the rate of the teacher
    step before it, as the original's schedulers step once per teacher epoch."""

    every: int = 1
    student_steps: int = 0
    teachers: bool = True  # False: a frozen pretrained teacher, so the timeline is the student phases alone

    @property
    def teacher_steps(self) -> int:
        return super().total

    @property
    def evaluations(self) -> list[int]:
        """The teacher steps done at each evaluation (each followed by a student phase)."""
        return evaluation_steps(self.teacher_steps, self.every)

    @property
    def total(self) -> int:
        return self.teacher_steps * self.teachers + len(self.evaluations) * self.student_steps

    def phase(self, step: int) -> Phase:
        if not 0 <= step < self.total:
            raise ValueError(f"step {step} is outside the {self.total} steps")
        if not self.teachers:  # each phase at the learning rate it has between the (untrained) teacher's steps
            index = step // self.student_steps
            return Phase(True, step, index, self.evaluations[index] - 1)
        start, done = 0, 0  # timeline steps before this segment, teacher steps before it
        for index, end in enumerate(self.evaluations):
            if step < start + end - done:
                return Phase(False, done + step - start, index, done + step - start)
            start += end - done
            if step < start + self.student_steps:
                return Phase(True, index * self.student_steps + step - start, index, end - 1)
            start += self.student_steps
            done = end
        raise AssertionError("the segments cover the timeline")

    def factor(self, step: int) -> float:
        return super().factor(self.phase(step).clock)


class BestScores(nn.Module):
    """A generator's score (lower is better) at each evaluation and the best so far, in buffers: a checkpoint holds
    them."""

    def __init__(self, evaluations: int) -> None:
        super().__init__()
        self.register_buffer("scores", torch.full((evaluations,), float("nan"), dtype=torch.float64))
        self.register_buffer("best", torch.tensor(float("inf"), dtype=torch.float64))
        self.register_buffer("best_index", torch.tensor(-1))

    def record(self, index: int, score: float) -> bool:
        """Keep evaluation ``index``'s score; True when it is the best so far (NaN never is)."""
        self.scores[index] = score
        if not score < float(self.best):
            return False
        self.best.fill_(score)
        self.best_index.fill_(index)
        return True


class HeldOutScoring:
    """Scores generators on the run's held-out inputs with one ``HeldOutScorer`` (lower is better), built at the first
    score (it loads Inception and the reference, the segmenter, or the teacher's outputs), and keeps the weights of
    the best so far."""

    def __init__(self, run: Run, metric: str, max_images: int | None, **references: str | None) -> None:
        self.run, self.metric, self.max_images, self.references = run, metric, max_images, references
        self.scorer: HeldOutScorer | None = None

    def __call__(self, model: nn.Module, index: int, record: BestScores, keep: nn.Module) -> float:
        """Score ``model`` (in eval mode) as evaluation ``index`` of ``record``; its weights go to ``keep`` when it
        is the best so far. Returns the score."""
        run = self.run
        if self.scorer is None:
            inputs, names = held_out_inputs(run.recipe.data, run.data.splits, run.recipe.data.crop_size)
            teacher = run.teacher.model if self.metric == "psnr" else None
            self.scorer = HeldOutScorer(self.metric, inputs[:self.max_images], names[:self.max_images], SCORE_BATCH,
                                        run.processes.device, teacher=teacher, **self.references)
        model.eval()
        try:
            with torch.autocast(run.processes.device.type, enabled=False):
                score = self.scorer(model)
        finally:
            model.train()
        if record.record(index, score):
            keep.load_state_dict(model.state_dict())
        return score


def as_measured(metric: str, score: float) -> float:
    """A HeldOutScorer score in its metric's own terms: FID as it is, PSNR (dB) and mIoU back from their negatives."""
    return -score if metric in ("psnr", "miou") else score


def scores_summary(state: dict[str, torch.Tensor], after: list[int], unit: str, metric: str = "fid",
                   exported: bool = False) -> dict:
    """What done.json, the summary and the lineage record of a ``BestScores``: the scores in the metric's own terms
    after ``after`` steps of the ``unit`` (teacher or student), the best and where; ``exported``: which student the
    export takes, the best scored, or the last when no score is a number."""
    index = int(state["best_index"])
    summary = {f"after_{unit}_steps": after, "scores": [as_measured(metric, s) for s in state["scores"].tolist()],
               "best": as_measured(metric, float(state["best"])),
               f"best_after_{unit}_steps": after[index] if index >= 0 else None}
    return summary | ({"exported": "best" if index >= 0 else "last"} if exported else {})


def _distill_cycle(run: Run, results: dict) -> dict:
    recipe, training, cycle, processes = run.recipe, run.recipe.training, run.recipe.cycle, run.processes
    size, norm = recipe.data.crop_size, _norm(recipe)
    pretrained = recipe.teachers.wide_from is not None  # a frozen teacher: no pair to train, no teacher FID
    pair = None if pretrained else CycleGan(
        *(_generator(recipe, recipe.teachers.wide_ngf, deep=False) for _ in range(2)),
        *(init_normal(PatchGanDiscriminator(3, training.ndf, N_LAYERS_D, norm)) for _ in range(2)),
        *(ImagePool(cycle.pool_size, (3, size, size)) for _ in range(2)),
        training.gan_mode, cycle.lambda_cycle, cycle.lambda_identity)
    student = _generator(recipe, recipe.student.ngf, deep=False)
    length = run.schedule(recipe.stages.distill)
    # With a frozen teacher the student gets what it would get beside the pair: the same phases of the same
    # batches at the same learning rates, only the teacher's steps and evaluations are left out.
    schedule = Alternation(length.constant, length.decay, length.step_size, length.gamma, cycle.eval_every,
                           training.n_dis * cycle.eval_every, teachers=not pretrained)
    # The student is scored after every eval_every of its steps (the original's evaluate_student_model at every
    # save_epoch_freq-th student epoch, the last of a phase included): n_dis times a phase; the best is exported.
    student_best = copy.deepcopy(student)
    student_fids = BestScores(len(schedule.evaluations) * training.n_dis)
    modules: dict[str, nn.Module] = {"student": student, "student_best": student_best, "student_fid": student_fids}
    groups = {"G_student": ["student"]}
    if pair is None:
        teacher = _pretrained_wide(run)  # in no optimiser and no checkpoint: it stays as loaded
        teacher_widths = _tap_widths(teacher, "resnet", size) if training.lambda_cd > 0 else []
    else:
        teacher = copy.deepcopy(pair.forward)  # the teacher A -> B of the best FID so far: the student's teacher
        fids = BestScores(len(schedule.evaluations))
        modules |= {"teacher_a": pair.forward, "teacher_b": pair.backward, "discriminator_a": pair.disc_a,
                    "discriminator_b": pair.disc_b, "pool_a": pair.pool_a, "pool_b": pair.pool_b,
                    "teacher_best": teacher, "fid": fids}
        groups |= {"G": ["teacher_a", "teacher_b"], "D": ["discriminator_a", "discriminator_b"]}
        teacher_widths = [w * recipe.teachers.wide_ngf for w in TAP_WIDTHS["resnet"]]
    taps = [FeatureTaps(model, list(TAPS["resnet"])) for model in (student, teacher)] if training.lambda_cd > 0 \
        else []
    if taps:
        modules["connectors"] = _connectors([w * recipe.student.ngf for w in TAP_WIDTHS["resnet"]], teacher_widths)
        groups["G_student"].append("connectors")
    guide = FrozenOutputs(teacher, taps[1] if taps else None, cache=pretrained and training.cache_frozen)
    features = perceptual.perceptual_network(training.perceptual, training.perceptual_normalization) \
        .to(processes.device)
    # FID of a generator (A -> B) on the held-out inputs; the weights of the best so far are kept
    evaluate = HeldOutScoring(run, "fid", cycle.max_images, reference=_fid_reference(recipe))

    def student_step(phase: Phase, score: float | None) -> Iterator[StepResult]:
        # The student's batches continue after the teacher's (other passes over the data, its own order); their
        # domain-B images are never read.
        batch = run.data.batch(schedule.teacher_steps + phase.step, training.batch_size, training.seed,
                               processes.rank, processes.world_size)
        inputs = batch.inputs.to(processes.device)
        teacher_output, teacher_pooled = guide(inputs, batch.keys)
        output = student(inputs)
        terms = student_terms(training, features, output, [teacher_output], processes.world_size)
        if taps:
            terms["G_cd"] = training.lambda_cd * channel_distillation(taps[0].features(), teacher_pooled,
                                                                      modules["connectors"])
        objectives = {"G_student": sum(terms.values())}
        if score is not None:
            terms["fid_teacher"] = torch.tensor(score)
        yield objectives, terms
        done = phase.step + 1  # student steps over all phases, this one's update included
        if done % cycle.eval_every == 0:  # after the update, as the original scores at the end of an epoch
            yield {}, {"fid_student": torch.tensor(evaluate(student, done // cycle.eval_every - 1, student_fids,
                                                            student_best))}

    def training_step(step: int) -> StepResult | Iterator[StepResult]:
        phase = schedule.phase(step)
        if not phase.student:
            batch = run.data.batch(phase.step, training.batch_size, training.seed, processes.rank,
                                   processes.world_size)
            rng = random.Random(f"{training.seed}:pool:{phase.step}:{processes.rank}")
            return pair.updates(batch.inputs.to(processes.device), batch.targets.to(processes.device), rng)
        first = phase.step == phase.index * schedule.student_steps
        # the teacher is scored before the phase's first step, as the original
        score = evaluate(pair.forward, phase.index, fids, teacher) if first and pair else None
        return student_step(phase, score)

    try:
        run.train("distill", recipe.stages.distill, modules, groups, training_step, schedule)
    finally:
        for tap in taps:
            tap.remove()
    final = run.final_state("distill")
    student_evaluations = [cycle.eval_every * (i + 1) for i in range(len(student_fids.scores))]
    result = {"teachers": {"a": _describe(recipe, "wide") | ({} if pretrained else {"cycle_gan": True})},
              # the exported student: the best scored (the last when no score is a number)
              "student_fid": scores_summary(final["student_fid"], student_evaluations, "student", exported=True)}
    if pretrained:
        return result
    return result | {"teacher_fid": scores_summary(final["fid"], schedule.evaluations, "teacher")}


def _describe(recipe: Recipe, name: str) -> dict:
    settings = recipe.teachers
    if name == "wide" and settings.wide_from == "teacher":
        return {"from": recipe.teacher, "frozen": True}  # its digest: the lineage's teacher_weights_sha256
    if name == "wide" and settings.wide_from is not None:
        return {"from": str(Path(settings.wide_from).resolve()), "frozen": True,
                "weights_sha256": sha256_of(weights_path(Path(settings.wide_from)))}
    arch = ARCHS[recipe.student.family][name == "deep"]
    return {"arch": arch, "ngf": settings.wide_ngf if name == "wide" else settings.deep_ngf, "trained_online": True}


def _export(run: Run, results: dict) -> Exported:
    recipe = run.recipe
    arch = ARCHS[recipe.student.family][0]
    arch_args = {"ngf": recipe.student.ngf, "norm": _norm(recipe)}
    modules, distill = run.final_state("distill"), results["distill"]
    # the best scored student: the CycleGAN setting's, or the pix2pix setting's with a best section
    scored = distill.get("student_fid") or distill.get("student_score") or {}
    state = modules["student_best" if scored.get("exported") == "best" else "student"]
    size = recipe.data.crop_size
    facts = {key: distill[key] for key in ("teachers", "teacher_fid", "student_fid", "student_score") if key in distill}
    return Exported(arch, arch_args, state, (size, size), lineage=facts, summary=facts)


register_method(Method(
    name="omgd", teachers=("resnet_generator", "mobile_resnet_generator", "unet_generator"),
    stages=lambda recipe: ["distill", "export"], run={"distill": _distill, "export": _export},
    sections={"student": StudentSettings, "teachers": TeacherSettings, "cycle": CycleSettings, "best": BestSettings,
              "stages": Stages},
    training=OmgdTrainingSettings, check=_check, check_inputs=_check_inputs, check_model=_check_model,
    teacher_hint="give the uncompressed generator the student is measured against (e.g. original/edges2shoes-r)"))
