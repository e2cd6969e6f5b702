"""GAN Compression and Fast GAN Compression (Li et al., CVPR 2020) as methods of stages over the shared pipeline.

GAN Compression: ``distill`` (a mobile student initialised from the teacher by keeping, layer by layer, the
channels of largest L1 norm, then distilled), ``supernet`` (the once-for-all supernet, initialised from the
distilled student, trained with one uniformly sampled config per step), ``search`` (every config under the MACs
budget, or evolution, scored on the held-out split), ``finetune`` (the chosen config trained on), ``export``.
Fast GAN Compression trains the supernet from scratch against the original ResNet teacher, searches by
evolution and fine-tunes only where the recipe says so.

Every training step is the originals' ``optimize_parameters``: the discriminator learns real (the target, or for
``single`` data the teacher's output) against the student's output, and the student minimises
lambda_gan * GAN + lambda_recon * recon (to the target when paired, to the teacher's output otherwise)
+ lambda_distill * sum over 4 taps of MSE(1x1 conv(student feature), teacher feature). The taps are the
outputs of the second downsampling and of residual blocks 3, 6 and 9 (``model.9/12/15/18``).
"""

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from gzoo.compress import search as searching
from gzoo.compress.data import held_out_inputs
from gzoo.compress.engine import FeatureTaps, TeacherOutputs, TrainingSettings, frozen
from gzoo.compress.losses import RECON_LOSSES, distillation_loss, gan_loss
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.pipeline import Run
from gzoo.compress.recipe import Recipe, check_stage_length, one_of
from gzoo.compress.settings import StageSettings
from gzoo.compress.transfer import init_normal, start_as_identity, transfer_largest_l1
from gzoo.errors import GzooError
from gzoo.evaluation import HeldOutScorer
from gzoo.models.layers import SuperConv2d
from gzoo.models.patchgan import PatchGanDiscriminator
from gzoo.models.resnet import SuperMobileResnetGenerator, mobile_resnet_generator

TAPS = ["model.9", "model.12", "model.15", "model.18"]
GAN_MODES = ("hinge", "lsgan", "vanilla")
SEARCH_METRICS = ("fid", "miou", "psnr")


# --- the recipe sections ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentSettings:
    ngf: int = 64  # the supernet's (and pre-distilled student's) full width
    n_blocks: int = 9
    search_space: str = "channels-64-cyclegan"


@dataclass(frozen=True)
class GanTrainingSettings(TrainingSettings):
    gan_mode: str = "lsgan"
    ndf: int = 64
    n_layers_d: int = 3
    lambda_gan: float = 1.0
    lambda_recon: float = 10.0
    lambda_distill: float = 0.01
    recon_loss: str = "l1"  # l1 | l2 | smooth_l1
    # Keep the teacher's output and features per distinct training input instead of running it every step:
    # exact, and possible only when inputs repeat (data.load_size == data.crop_size: no random crop).
    cache_teacher: bool = False


@dataclass(frozen=True)
class SearchSettings:
    algorithm: str = "brute_force"  # brute_force | evolution
    budget: float = 3e9  # paper-convention MACs at the recipe's evaluation size
    metric: str = "fid"  # fid (against reference) | miou (segmenter + labels) | psnr (against the teacher)
    reference: str | None = None  # fid: real statistics .npz or an image folder
    segmenter: str | None = None
    labels: str | None = None
    input_size: int | None = None  # the size MACs are counted at (None: data.crop_size)
    batch_size: int = 8
    max_images: int | None = None
    population_size: int = 100
    iterations: int = 500
    mutate_prob: float = 0.2
    mutation_ratio: float = 0.5
    parent_ratio: float = 0.25
    weighted_sample: float = 1.0  # above 1 the first generation favours narrow widths (horse2zebra_fast: 2)


@dataclass(frozen=True)
class Stages:
    distill: StageSettings | None = None
    supernet: StageSettings | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    finetune: StageSettings | None = None


def _check(recipe: Recipe) -> None:
    """Choices and combinations a type check cannot see."""
    data, training, stages, search = recipe.data, recipe.training, recipe.stages, recipe.stages.search
    one_of(recipe.student.search_space, tuple(searching.SEARCH_SPACES), "student.search_space")
    widest = max(max(choices) for choices in searching.SEARCH_SPACES[recipe.student.search_space])
    if widest > recipe.student.ngf:
        raise GzooError(f"recipe: search space {recipe.student.search_space} needs a supernet of ngf >= {widest}, "
                        f"student.ngf is {recipe.student.ngf}")
    one_of(training.gan_mode, GAN_MODES, "training.gan_mode")
    one_of(training.recon_loss, tuple(RECON_LOSSES), "training.recon_loss")
    if training.cache_teacher and data.load_size != data.crop_size:
        raise GzooError("recipe: training.cache_teacher needs data.load_size equal to data.crop_size (a random crop "
                        "rarely repeats, so there would be nothing to reuse)")
    for name in ("ndf", "n_layers_d"):
        if getattr(training, name) < 1:
            raise GzooError(f"recipe: 'training.{name}' must be at least 1")
    needed = ("distill", "supernet") if recipe.method == "gan-compression" else ("supernet",)
    for name in needed:
        if getattr(stages, name) is None:
            raise GzooError(f"recipe: {recipe.method} needs a 'stages.{name}' section (its epochs or steps)")
    for name in ("distill", "supernet", "finetune"):
        if getattr(stages, name) is not None:
            check_stage_length(name, getattr(stages, name))
    one_of(search.algorithm, ("brute_force", "evolution"), "stages.search.algorithm")
    one_of(search.metric, SEARCH_METRICS, "stages.search.metric")
    if search.metric == "fid" and not search.reference:
        raise GzooError("recipe: search by fid needs 'stages.search.reference' (real statistics .npz or a folder)")
    if search.metric == "miou" and not (search.segmenter and search.labels):
        raise GzooError("recipe: search by miou needs 'stages.search.segmenter' and 'stages.search.labels'")
    # A budget below every config of the space fails here, before any training.
    size = search.input_size or data.crop_size
    smallest, config = searching.smallest_config_macs(recipe.student.search_space, size, recipe.student.n_blocks)
    if smallest > search.budget:
        raise GzooError(f"recipe: stages.search.budget {search.budget:.4g} is below the smallest config {config} of "
                        f"{recipe.student.search_space} ({smallest:.4g} MACs at {size}x{size}); raise the budget")


def _stages(recipe: Recipe) -> list[str]:
    stages = ["distill"] if recipe.method == "gan-compression" else []
    stages += ["supernet", "search"]
    if recipe.stages.finetune is not None:
        stages.append("finetune")
    return [*stages, "export"]


# --- the training stages ----------------------------------------------------------------------------------------

def _distill(run: Run, results: dict) -> dict:
    recipe = run.recipe
    student = init_normal(mobile_resnet_generator(ngf=recipe.student.ngf, n_blocks=recipe.student.n_blocks,
                                                  norm=run.teacher.norm))
    copied = transfer_largest_l1(run.teacher.model, student)
    zeroed = start_as_identity(student, copied)
    discriminator = _discriminator(recipe)
    mappings = _mappings(run, nn.Conv2d)
    _train(run, "distill", recipe.stages.distill, student, mappings, discriminator, config=lambda step: None)
    return {"layers_from_teacher": copied, "blocks_started_as_identity": zeroed}


def _supernet(run: Run, results: dict) -> dict:
    recipe = run.recipe
    supernet = init_normal(_new_supernet(run))
    discriminator = _discriminator(recipe)
    mappings = _mappings(run, SuperConv2d)
    if "distill" in results:  # GAN Compression: start from the distilled student and its discriminator
        state = run.final_state("distill")
        supernet.load_state_dict(state["student"])
        discriminator.load_state_dict(state["discriminator"])
    space = searching.SEARCH_SPACES[recipe.student.search_space]

    def sample(step: int) -> searching.Config:  # one config per step, the same in every process
        rng = random.Random(f"{recipe.training.seed}:config:{step}")
        return tuple(rng.choice(choices) for choices in space)

    _train(run, "supernet", recipe.stages.supernet, supernet, mappings, discriminator, config=sample)
    return {"search_space": recipe.student.search_space}


def _finetune(run: Run, results: dict) -> dict:
    recipe, best = run.recipe, tuple(results["search"]["config"])
    supernet = _new_supernet(run)
    discriminator, mappings = _discriminator(recipe), _mappings(run, SuperConv2d)
    state = run.final_state("supernet")
    for module, name in ((supernet, "student"), (discriminator, "discriminator"), (mappings, "mappings")):
        module.load_state_dict(state[name])
    _train(run, "finetune", recipe.stages.finetune, supernet, mappings, discriminator, config=lambda step: best)
    return {"config": searching.config_string(best)}


def _new_supernet(run: Run) -> SuperMobileResnetGenerator:
    student = run.recipe.student
    return SuperMobileResnetGenerator(student.ngf, student.n_blocks, norm=run.teacher.norm)


def _discriminator(recipe: Recipe) -> nn.Module:
    channels = 6 if recipe.data.layout == "paired" else 3  # pix2pix's D sees the input beside the output
    return init_normal(PatchGanDiscriminator(channels, recipe.training.ndf, recipe.training.n_layers_d))


def _mappings(run: Run, conv: type[nn.Conv2d]) -> nn.ModuleList:
    """The learnable 1x1 convs from the student's trunk width to the teacher's, one per tap."""
    student, teacher = 4 * run.recipe.student.ngf, run.teacher.model.widths.down[-1]
    return init_normal(nn.ModuleList(conv(student, teacher, 1) for _ in TAPS))


def _teacher_outputs(run: Run) -> "TeacherOutputs":
    """One per run, shared by its training stages, so a cache fills once."""
    if "teacher_outputs" not in run.shared:
        teacher = run.teacher.model
        run.shared["teacher_outputs"] = TeacherOutputs(teacher, FeatureTaps(teacher, TAPS),
                                                       run.recipe.training.cache_teacher)
    return run.shared["teacher_outputs"]


def _train(run: Run, stage: str, settings: StageSettings, student: nn.Module, mappings: nn.ModuleList,
           discriminator: nn.Module, config: Callable[[int], searching.Config | None]) -> None:
    recipe, training, processes = run.recipe, run.recipe.training, run.processes
    teacher_outputs = _teacher_outputs(run)
    recon = RECON_LOSSES[training.recon_loss]
    paired, single = recipe.data.layout == "paired", recipe.data.layout == "single"
    student_taps = FeatureTaps(student, TAPS)

    def training_step(step: int) -> tuple[dict, dict]:
        batch = run.data.batch(step, training.batch_size, training.seed, processes.rank, processes.world_size)
        inputs = batch.inputs.to(processes.device)
        targets = None if batch.targets is None else batch.targets.to(processes.device)
        expected, teacher_features = teacher_outputs(inputs, batch.keys)
        if isinstance(student, SuperMobileResnetGenerator):
            student.set_config(config(step))
        output = student(inputs)
        real = expected if single else targets
        fake_seen, real_seen = (torch.cat((inputs, output), 1), torch.cat((inputs, real), 1)) if paired else \
            (output, real)
        loss_d = 0.5 * (gan_loss(training.gan_mode, discriminator(fake_seen.detach()), False)
                        + gan_loss(training.gan_mode, discriminator(real_seen), True))
        with frozen(discriminator):
            loss_gan = training.lambda_gan * gan_loss(training.gan_mode, discriminator(fake_seen), True, False)
        loss_recon = training.lambda_recon * recon(output, targets if paired else expected)
        terms = {"D": loss_d, "G_gan": loss_gan, "G_recon": loss_recon}
        loss_g = loss_gan + loss_recon
        if training.lambda_distill > 0:
            loss_distill = training.lambda_distill * distillation_loss(
                student_taps.features(), teacher_features, mappings)
            terms["G_distill"] = loss_distill
            loss_g = loss_g + loss_distill
        return {"D": loss_d, "G": loss_g}, terms

    modules = {"student": student, "mappings": mappings, "discriminator": discriminator}
    try:
        run.train(stage, settings, modules, {"G": ["student", "mappings"], "D": ["discriminator"]}, training_step)
    finally:
        student_taps.remove()


# --- search -----------------------------------------------------------------------------------------------------

def _search(run: Run, results: dict) -> dict:
    recipe, settings = run.recipe, run.recipe.stages.search
    size = settings.input_size or recipe.data.crop_size
    supernet = _new_supernet(run).to(run.processes.device)
    supernet.load_state_dict(run.final_state("supernet")["student"])
    supernet.eval()
    inputs, names = held_out_inputs(recipe.data, run.data.splits, recipe.data.crop_size)
    if settings.max_images:
        inputs, names = inputs[:settings.max_images], names[:settings.max_images]
    scorer = HeldOutScorer(settings.metric, inputs, names, settings.batch_size, run.processes.device,
                           teacher=run.teacher.model, reference=settings.reference, segmenter=settings.segmenter,
                           labels=settings.labels)

    def score(config: searching.Config) -> float:
        supernet.set_config(config)
        return scorer(supernet)

    space = searching.SEARCH_SPACES[recipe.student.search_space]
    macs = searching.sub_mobile_macs((3, size, size), recipe.student.n_blocks)
    memo_score = run.directory.memo("search", "scores", score)
    if settings.algorithm == "brute_force":
        found = searching.brute_force(space, macs, memo_score, settings.budget)
    else:
        found = searching.evolution_search(space, macs, memo_score, settings.budget, searching.EvolutionSettings(
            settings.population_size, settings.iterations, settings.mutate_prob, settings.mutation_ratio,
            settings.parent_ratio, recipe.training.seed, settings.weighted_sample))
    if run.processes.is_main:
        with open(run.stage_dir("search") / "results.csv", "w", newline="") as table:
            writer = csv.DictWriter(table, ["config", "macs", "score"])
            writer.writeheader()
            writer.writerows(found.table())
    return {"config": list(found.best), "config_string": searching.config_string(found.best),
            "score": found.score, "metric": settings.metric, "macs_paper": found.macs, "macs_input": size,
            "budget": settings.budget, "algorithm": settings.algorithm, "evaluated": len(found.evaluated),
            "held_out_images": len(names)}


# --- export -----------------------------------------------------------------------------------------------------

def _export(run: Run, results: dict) -> Exported:
    """The chosen sub-network, extracted from the supernet as it was trained last."""
    recipe = run.recipe
    best = results["search"]["config_string"]
    source = "finetune" if "finetune" in results else "supernet"
    supernet = _new_supernet(run)
    supernet.load_state_dict(run.final_state(source)["student"])
    student = supernet.extract_subnet(best).eval()
    size = recipe.data.crop_size
    return Exported("sub_mobile_resnet_generator",
                    {"config": best, "n_blocks": recipe.student.n_blocks, "norm": run.teacher.norm},
                    student.state_dict(), (size, size),
                    lineage={"search": results["search"], "weights_from": source},
                    summary={"config": best, "search": results["search"]})


for _name in ("gan-compression", "fast-gan-compression"):
    register_method(Method(
        name=_name, teachers=("resnet_generator", "mobile_resnet_generator"), stages=_stages,
        run={"distill": _distill, "supernet": _supernet, "search": _search, "finetune": _finetune, "export": _export},
        sections={"student": StudentSettings, "stages": Stages}, training=GanTrainingSettings, check=_check,
        teacher_hint="give a ResNet generator teacher (e.g. original/horse2zebra)"))
