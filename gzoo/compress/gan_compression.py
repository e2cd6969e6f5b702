"""GAN Compression and Fast GAN Compression (Li et al., CVPR 2020) as one pipeline of resumable stages.

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

A stage that finished is never repeated: it leaves ``<stage>/done.json`` in the run directory.
"""

import csv
import hashlib
import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from gzoo.compress import search as searching
from gzoo.compress.data import (
    TrainingData,
    find_splits,
    held_out_inputs,
    make_skimage_photos,
    skimage_photos_settings,
)
from gzoo.compress.engine import (
    FeatureTaps,
    Processes,
    Schedule,
    StepProgress,
    Trainer,
    barrier,
    broadcast_modules,
    frozen,
    start_processes,
)
from gzoo.compress.losses import RECON_LOSSES, distillation_loss, gan_loss
from gzoo.compress.recipe import Recipe, StageSettings
from gzoo.errors import GzooError
from gzoo.models.layers import Residual, SuperConv2d
from gzoo.models.patchgan import PatchGanDiscriminator
from gzoo.models.resnet import ResnetGenerator, SuperMobileResnetGenerator, mobile_resnet_generator
from gzoo.paths import atomic_write_text

TAPS = ["model.9", "model.12", "model.15", "model.18"]
RESOLVED_RECIPE = "recipe.yaml"
LOG = "log.jsonl"
STUDENT_DIR = "student"
Progress = Callable[[str, int, int, dict[str, float]], None]  # (stage, done, total, losses)


def stages_of(recipe: Recipe) -> list[str]:
    """The stages a recipe runs, in order."""
    stages = ["distill"] if recipe.method == "gan-compression" else []
    stages += ["supernet", "search"]
    if recipe.stages.finetune is not None:
        stages.append("finetune")
    return [*stages, "export"]


@dataclass
class Run:
    """What every stage of one run shares."""

    recipe: Recipe
    directory: Path
    processes: Processes
    teacher: ResnetGenerator
    teacher_id: str
    teacher_sha256: str
    data: TrainingData
    progress: Progress | None
    teacher_outputs: "TeacherOutputs"  # shared by the training stages, so a cache fills once per run

    @property
    def log_file(self) -> Path:
        return self.directory / LOG

    @property
    def norm(self) -> str:
        """The student's norm: the teacher's, as the originals build both with one --norm option."""
        return self.teacher.options["norm"]

    def supernet(self) -> SuperMobileResnetGenerator:
        student = self.recipe.student
        return SuperMobileResnetGenerator(student.ngf, student.n_blocks, norm=self.norm)

    def stage_dir(self, stage: str) -> Path:
        return self.directory / stage

    def finished(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "done.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def finish(self, stage: str, result: dict) -> dict:
        if self.processes.is_main:
            self.stage_dir(stage).mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.stage_dir(stage) / "done.json", json.dumps(result, indent=2) + "\n")
        barrier(self.processes)
        return result


def compress(recipe: Recipe, directory: Path, resume: bool = False, progress: Progress | None = None) -> dict:
    """Run the recipe's stages in ``directory`` (skipping finished ones when resuming); returns the summary."""
    processes = start_processes()
    directory = Path(directory)
    # The dataset and the teacher are checked before the run directory is made, so a mistake leaves nothing.
    splits = None if recipe.data.builtin else find_splits(recipe.data, Path(recipe.data.root))
    teacher, teacher_id, teacher_sha256 = _load_teacher(recipe.teacher, processes)
    _prepare_directory(recipe, directory, resume, processes)
    if recipe.training.threads:
        torch.set_num_threads(recipe.training.threads)
    if recipe.data.builtin:
        if processes.is_main:
            make_skimage_photos(directory / "data", recipe.data)
        barrier(processes)
        recipe = replace(recipe, data=skimage_photos_settings(directory / "data", recipe.data))
        splits = find_splits(recipe.data, Path(recipe.data.root))
    run = Run(recipe, directory, processes, teacher, teacher_id, teacher_sha256, TrainingData(recipe.data, splits),
              progress, TeacherOutputs(teacher, FeatureTaps(teacher, TAPS), recipe.training.cache_teacher))
    results = {}
    for stage in stages_of(recipe):
        if (done := run.finished(stage)) is not None:
            results[stage] = done
            continue
        torch.manual_seed(recipe.training.seed)  # a stage builds its modules alike in every process and on resume
        results[stage] = run.finish(stage, STAGES[stage](run, results))
    return results["export"]


def _prepare_directory(recipe: Recipe, directory: Path, resume: bool, processes: Processes) -> None:
    """A new run needs an empty directory; a resumed one the same resolved recipe."""
    resolved = yaml.safe_dump(recipe.as_dict(), sort_keys=False)
    stored = directory / RESOLVED_RECIPE
    if resume:
        if not stored.is_file():
            raise GzooError(f"{directory} holds no run to resume (no {RESOLVED_RECIPE}); run without --resume")
        if stored.read_text() != resolved:
            raise GzooError(f"{directory} was started with other settings (see its {RESOLVED_RECIPE}); resume with "
                            "the same recipe and --set values, or start a new run with -o")
        return
    if processes.is_main:
        if directory.exists() and any(directory.iterdir()):
            raise GzooError(f"{directory} already holds a run; pass --resume to continue it or -o for a new "
                            "directory")
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stored, resolved)
    barrier(processes)


def _load_teacher(name: str, processes: Processes) -> tuple[ResnetGenerator, str, str]:
    from gzoo import api
    from gzoo.zoo.hub import sha256_of
    from gzoo.zoo.modeldir import WEIGHTS, read_config

    if processes.is_main:  # the first process pulls the teacher into the cache, the others then read it
        directory = api.model_directory(name)
    barrier(processes)
    if not processes.is_main:
        directory = api.model_directory(name)
    teacher = api.load(directory)
    if not isinstance(teacher, ResnetGenerator):
        arch = read_config(directory).get("arch")
        raise GzooError(f"teacher {name} is a {arch}; GAN Compression recipes distil ResNet generators "
                        "(resnet_generator, mobile_resnet_generator)")
    teacher.to(processes.device).requires_grad_(False)
    return teacher, (name if not Path(name).exists() else str(Path(name).resolve())), sha256_of(directory / WEIGHTS)


# --- the training stages ----------------------------------------------------------------------------------------

def init_normal(module: nn.Module) -> nn.Module:
    """The originals' ``init_net``: conv weights N(0, 0.02), biases 0, norm scales N(1, 0.02)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d | nn.InstanceNorm2d) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return module


def _distill(run: Run, results: dict) -> dict:
    recipe = run.recipe
    student = init_normal(mobile_resnet_generator(ngf=recipe.student.ngf, n_blocks=recipe.student.n_blocks,
                                                  norm=run.norm))
    copied = transfer_largest_l1(run.teacher, student)
    zeroed = start_as_identity(student, copied)
    discriminator = _discriminator(recipe)
    mappings = _mappings(run, nn.Conv2d)
    _train(run, "distill", recipe.stages.distill, student, mappings, discriminator, config=lambda step: None)
    return {"layers_from_teacher": copied, "blocks_started_as_identity": zeroed}


def _supernet(run: Run, results: dict) -> dict:
    recipe = run.recipe
    supernet = init_normal(run.supernet())
    discriminator = _discriminator(recipe)
    mappings = _mappings(run, SuperConv2d)
    if "distill" in results:  # GAN Compression: start from the distilled student and its discriminator
        state = _final_state(run, "distill")
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
    supernet = run.supernet()
    discriminator, mappings = _discriminator(recipe), _mappings(run, SuperConv2d)
    state = _final_state(run, "supernet")
    for module, name in ((supernet, "student"), (discriminator, "discriminator"), (mappings, "mappings")):
        module.load_state_dict(state[name])
    _train(run, "finetune", recipe.stages.finetune, supernet, mappings, discriminator, config=lambda step: best)
    return {"config": searching.config_string(best)}


def _discriminator(recipe: Recipe) -> nn.Module:
    channels = 6 if recipe.data.layout == "paired" else 3  # pix2pix's D sees the input beside the output
    return init_normal(PatchGanDiscriminator(channels, recipe.training.ndf, recipe.training.n_layers_d))


def _mappings(run: Run, conv: type[nn.Conv2d]) -> nn.ModuleList:
    """The learnable 1x1 convs from the student's trunk width to the teacher's, one per tap."""
    student, teacher = 4 * run.recipe.student.ngf, run.teacher.widths.down[-1]
    return init_normal(nn.ModuleList(conv(student, teacher, 1) for _ in TAPS))


def _final_state(run: Run, stage: str) -> dict:
    state = torch.load(run.stage_dir(stage) / "checkpoint.pt", map_location="cpu", weights_only=True)
    return state["modules"]


def _schedule(run: Run, settings: StageSettings) -> Schedule:
    """Steps of a stage: given, or epochs over the training split at the recipe's batch size."""
    if settings.steps is not None:
        return Schedule(settings.steps, settings.steps_decay or 0)
    per_epoch = -(-len(run.data) // run.recipe.training.batch_size)
    return Schedule(settings.epochs * per_epoch, (settings.epochs_decay or 0) * per_epoch)


def _train(run: Run, stage: str, settings: StageSettings, student: nn.Module, mappings: nn.ModuleList,
           discriminator: nn.Module, config: Callable[[int], searching.Config | None]) -> None:
    recipe, training, processes = run.recipe, run.recipe.training, run.processes
    modules = {"student": student, "mappings": mappings, "discriminator": discriminator}
    for module in modules.values():
        module.to(processes.device)
    broadcast_modules(modules, processes)
    trainer = Trainer(run.stage_dir(stage), modules, {"G": ["student", "mappings"], "D": ["discriminator"]},
                      training, _schedule(run, settings), settings.lr or training.lr, processes, run.log_file, stage)
    trainer.resume()
    student_taps = FeatureTaps(student, TAPS)
    recon = RECON_LOSSES[training.recon_loss]
    paired, single = recipe.data.layout == "paired", recipe.data.layout == "single"

    def training_step(step: int) -> tuple[dict, dict]:
        batch = run.data.batch(step, training.batch_size, training.seed, processes.rank, processes.world_size)
        inputs = batch.inputs.to(processes.device)
        targets = None if batch.targets is None else batch.targets.to(processes.device)
        expected, teacher_features = run.teacher_outputs(inputs, batch.keys)
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

    step_progress: StepProgress | None = None
    if run.progress:
        def step_progress(done: int, total: int, losses: dict[str, float]) -> None:
            run.progress(stage, done, total, losses)
    try:
        trainer.run(training_step, step_progress)
    finally:
        student_taps.remove()


class TeacherOutputs:
    """The teacher's output and tap features for a batch; with ``cache``, computed once per distinct input."""

    def __init__(self, teacher: nn.Module, taps: FeatureTaps, cache: bool) -> None:
        self.teacher, self.taps, self.cache = teacher, taps, cache
        self.kept: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def __call__(self, inputs: torch.Tensor, keys: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.cache:
            with torch.no_grad():
                return self.teacher(inputs), self.taps.features()
        missing = [i for i, key in enumerate(keys) if key not in self.kept]
        if missing:
            with torch.no_grad():
                outputs = self.teacher(inputs[missing])
            features = self.taps.features()
            for row, index in enumerate(missing):
                self.kept[keys[index]] = (outputs[row].clone(), [f[row].clone() for f in features])
        entries = [self.kept[key] for key in keys]
        return torch.stack([e[0] for e in entries]), [torch.stack([e[1][t] for e in entries])
                                                       for t in range(len(entries[0][1]))]


# --- transferring the teacher's weights -------------------------------------------------------------------------

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


# --- search -----------------------------------------------------------------------------------------------------

def _search(run: Run, results: dict) -> dict:
    recipe, settings = run.recipe, run.recipe.stages.search
    size = settings.input_size or recipe.data.crop_size
    supernet = run.supernet().to(run.processes.device)
    supernet.load_state_dict(_final_state(run, "supernet")["student"])
    supernet.eval()
    inputs, names = held_out_inputs(recipe.data, run.data.splits, recipe.data.crop_size)
    if settings.max_images:
        inputs, names = inputs[:settings.max_images], names[:settings.max_images]
    score = _scorer(run, supernet, inputs, names)
    space = searching.SEARCH_SPACES[recipe.student.search_space]
    macs = searching.sub_mobile_macs((3, size, size), recipe.student.n_blocks)
    scores_file = run.stage_dir("search") / "scores.jsonl"
    memo_score = _remembered(scores_file, score, run.processes)
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


def _remembered(path: Path, score: Callable[[searching.Config], float],
                processes: Processes) -> Callable[[searching.Config], float]:
    """Scores kept in a JSON-lines file: a resumed search does not score a config twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    known = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            known[tuple(row["config"])] = row["score"]

    def remembered(config: searching.Config) -> float:
        if config not in known:
            known[config] = score(config)
            if processes.is_main:
                with open(path, "a") as file:
                    file.write(json.dumps({"config": list(config), "score": known[config]}) + "\n")
        return known[config]

    return remembered


def _scorer(run: Run, supernet: SuperMobileResnetGenerator, inputs: torch.Tensor,
            names: list[str]) -> Callable[[searching.Config], float]:
    """Lower is better: FID, or minus mIoU / PSNR against the teacher, on the held-out split."""
    from gzoo.data.datasets import quantise
    from gzoo.metrics.fidelity import psnr

    settings, device = run.recipe.stages.search, run.processes.device
    batch = settings.batch_size

    def outputs(model: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return [model(inputs[i:i + batch].to(device)).clamp(-1, 1).cpu() for i in range(0, len(inputs), batch)]

    if settings.metric == "psnr":
        expected = outputs(run.teacher)

        def score(config: searching.Config) -> float:
            supernet.set_config(config)
            got = outputs(supernet)
            return -sum(psnr(o, e) * len(o) for o, e in zip(got, expected, strict=True)) / len(inputs)
        return score
    if settings.metric == "fid":
        from gzoo.metrics import fid as fidlib
        from gzoo.metrics.inception import inception_weights_path

        weights, _ = inception_weights_path()
        inception = fidlib.InceptionFeatures(weights)
        reference = Path(settings.reference)
        if reference.suffix == ".npz":
            reference_stats = fidlib.load_npz_statistics(reference)
        else:
            from gzoo.data.images import scan_image_folder

            reference_stats = fidlib.statistics(inception.extract(scan_image_folder(reference).batches(batch)))

        def score(config: searching.Config) -> float:
            supernet.set_config(config)
            features = inception.extract(quantise(o) for o in outputs(supernet))
            return fidlib.fid(fidlib.statistics(features), reference_stats)
        return score
    from gzoo.evaluation import read_label_map
    from gzoo.metrics.miou import CITYSCAPES_CLASSES, confusion_matrix, load_segmenter, miou

    segmenter = load_segmenter(settings.segmenter)
    labels = torch.stack([read_label_map(Path(settings.labels) / f"{Path(n).stem}.png") for n in names])

    def score(config: searching.Config) -> float:
        supernet.set_config(config)
        images = torch.cat([quantise(o) for o in outputs(supernet)])
        confusion = confusion_matrix(segmenter(images, tuple(labels.shape[-2:])), labels, CITYSCAPES_CLASSES)
        return -miou(confusion)[0]
    return score


# --- export -----------------------------------------------------------------------------------------------------

def _export(run: Run, results: dict) -> dict:
    """The chosen sub-network as a standalone model directory, its lineage in config.json, evaluated."""
    from gzoo.zoo.modeldir import save_model_dir

    recipe = run.recipe
    best = results["search"]["config_string"]
    source = "finetune" if "finetune" in results else "supernet"
    supernet = run.supernet()
    supernet.load_state_dict(_final_state(run, source)["student"])
    student = supernet.extract_subnet(best).eval()
    size = recipe.data.crop_size
    directory = run.directory / STUDENT_DIR
    recipe_file = Path(recipe.path) if recipe.path else None
    config = {
        "method": recipe.method, "task": recipe.task, "teacher": run.teacher_id,
        "arch": "sub_mobile_resnet_generator",
        "arch_args": {"config": best, "n_blocks": recipe.student.n_blocks, "norm": run.norm},
        "input": {"channels": 3, "height": size, "width": size},
        "recipe": str(recipe_file) if recipe_file else None,
        "lineage": {
            "recipe_sha256": hashlib.sha256(recipe_file.read_bytes()).hexdigest() if recipe_file else None,
            "resolved_recipe": recipe.as_dict(), "run_directory": str(run.directory.resolve()),
            "teacher_weights_sha256": run.teacher_sha256, "stages": stages_of(recipe),
            "search": results["search"], "weights_from": source,
        },
    }
    if run.processes.is_main:
        save_model_dir(directory, student.state_dict(), config)
    barrier(run.processes)
    summary = {"student": str(directory), "config": best, "search": results["search"]}
    if run.processes.is_main:
        summary |= _evaluate(run, directory, student, size)
    return summary


def _evaluate(run: Run, directory: Path, student: nn.Module, size: int) -> dict:
    """The stored eval row of the student on the held-out split, and the identity baseline beside it."""
    from gzoo import api
    from gzoo.metrics import count_macs
    from gzoo.metrics.fidelity import psnr

    recipe = run.recipe
    held_out = run.directory / "held_out"
    if not held_out.is_dir():
        staging = run.directory / ".held_out"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for path in run.data.splits.held_out:
            shutil.copyfile(path, staging / path.name)
        staging.rename(held_out)
    data = held_out if recipe.evaluate.data == "held_out" else Path(recipe.evaluate.data)
    mode = "paired" if recipe.data.layout == "paired" and data == held_out else "single" if data == held_out \
        else "auto"
    measured = api.evaluate(directory, data, list(recipe.evaluate.metrics), run.teacher_id, mode=mode,
                            direction=recipe.data.direction, max_images=recipe.evaluate.max_images,
                            reference=recipe.evaluate.reference, segmenter=recipe.evaluate.segmenter,
                            labels=recipe.evaluate.labels)
    example = torch.zeros(1, 3, size, size)
    teacher_macs = count_macs(run.teacher.cpu().eval(), example).macs_paper
    student_macs = count_macs(student, example).macs_paper
    summary: dict[str, Any] = {"metrics": measured["metrics"], "teacher_macs_paper": teacher_macs,
                               "student_macs_paper": student_macs, "macs_reduction": teacher_macs / student_macs,
                               "macs_input": f"{size}x{size}"}
    if recipe.data.layout != "paired":
        inputs, _ = held_out_inputs(recipe.data, run.data.splits, size)
        with torch.inference_mode():
            expected = run.teacher(inputs).clamp(-1, 1)
        summary["identity_psnr"] = psnr(inputs, expected)  # the input taken as the output
    return summary


STAGES: dict[str, Callable[[Run, dict], dict]] = {
    "distill": _distill, "supernet": _supernet, "search": _search, "finetune": _finetune, "export": _export,
}
