"""The pipeline every compression method runs on.

``compress`` checks the local inputs, loads the teacher, prepares the run directory (or checks the one it
resumes), makes the builtin data, then runs the method's stages in order: a stage that finished is never run
again, and each starts from the recipe's seed, so a resumed run ends where an uninterrupted one does. The last
stage, ``export``, returns what the method exports; the pipeline writes it as a model directory with its
lineage, evaluates it on the held-out data (the stored row of ``gzoo eval``), counts MACs against the teacher
and, for a student of images without ground truth, measures the identity baseline beside it. The student's
input channels are the data layout's (``gzoo.compress.data.input_channels``: 36 for Cityscapes label maps).

The teacher comes in as a directory: ``gzoo.api`` resolves zoo ids (pulling weights) and hands over a function
that returns the directory, called by the first process of a torchrun job before the others.
"""

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo import evaluation, machine
from gzoo.compress import get_method
from gzoo.compress.data import (
    TrainingData,
    find_splits,
    held_out_inputs,
    input_channels,
    make_skimage_photos,
    skimage_photos_settings,
)
from gzoo.compress.engine import (
    Optimizer,
    Processes,
    Schedule,
    StepProgress,
    StepsInterrupted,
    Trainer,
    TrainingStep,
    barrier,
    broadcast_modules,
    start_processes,
)
from gzoo.compress.method import Exported, Method
from gzoo.compress.recipe import Recipe
from gzoo.compress.rundir import RunDirectory
from gzoo.compress.settings import StageSettings
from gzoo.data.modeldir import read_config, save_model_dir, sha256_of, weights_path
from gzoo.errors import GzooError, Interrupted
from gzoo.metrics import count_macs
from gzoo.metrics.fidelity import psnr
from gzoo.models import load_model_dir, signed_range

STUDENT_DIR = "student"
HELD_OUT_DIR = "held_out"
Progress = Callable[[str, int, int, dict[str, float]], None]  # (stage, done, total, losses)
Notify = Callable[[str], None]  # one line for the person running it (where a resumed run goes on)
CardWriter = Callable[[dict[str, Any]], str]  # a model directory's config -> its README.md


@dataclass(frozen=True)
class Teacher:
    model: nn.Module  # on the run's device, frozen, in eval mode
    name: str  # the zoo id, or the model directory's absolute path
    directory: Path
    arch: str
    weights_sha256: str

    @property
    def norm(self) -> str | None:
        return getattr(self.model, "options", {}).get("norm")


@dataclass
class Run:
    """What every stage of one run shares."""

    recipe: Recipe
    method: Method
    directory: RunDirectory
    processes: Processes
    teacher: Teacher | None  # None: a recipe its method trains without one
    data: TrainingData
    progress: Progress | None
    notify: Notify | None = None
    shared: dict[str, Any] = field(default_factory=dict)  # objects a method's stages share within the run

    @property
    def log_file(self) -> Path:
        return self.directory.log_file

    def stage_dir(self, stage: str) -> Path:
        return self.directory.stage_dir(stage)

    def schedule(self, settings: StageSettings) -> Schedule:
        """Steps of a stage: given, or epochs over the training split at the recipe's batch size."""
        if settings.steps is not None:
            return Schedule(settings.steps, settings.steps_decay or 0, settings.lr_step, settings.lr_gamma)
        per_epoch = -(-len(self.data) // self.recipe.training.batch_size)
        return Schedule(settings.epochs * per_epoch, (settings.epochs_decay or 0) * per_epoch,
                        settings.lr_step, settings.lr_gamma)

    def train(self, stage: str, settings: StageSettings, modules: dict[str, nn.Module],
              groups: dict[str, list[str] | Optimizer], step: TrainingStep, schedule: Schedule | None = None) -> None:
        """Train ``modules`` for the stage's schedule (or the method's own ``schedule``) from its checkpoint when
        resuming, on the run's device, every process starting from the first one's weights."""
        for module in modules.values():
            module.to(self.processes.device)
        broadcast_modules(modules, self.processes)
        trainer = Trainer(self.stage_dir(stage), modules, groups, self.recipe.training,
                          schedule or self.schedule(settings), settings.lr or self.recipe.training.lr, self.processes,
                          self.log_file, stage)
        if trainer.resume() and self.notify and self.processes.is_main:
            self.notify(f"{stage}: resuming from step {trainer.step} of {trainer.schedule.total}")
        step_progress: StepProgress | None = None
        if self.progress:
            def step_progress(done: int, total: int, losses: dict[str, float]) -> None:
                self.progress(stage, done, total, losses)
        trainer.run(step, step_progress)

    def final_state(self, stage: str) -> dict[str, dict[str, torch.Tensor]]:
        """The modules' weights at the end of a finished training stage."""
        state = torch.load(self.stage_dir(stage) / "checkpoint.pt", map_location="cpu", weights_only=True)
        return state["modules"]


def check_teacher(method: Method, name: str, arch: str) -> None:
    """One line when ``method`` cannot compress a teacher of architecture ``arch``."""
    if not method.accepts(arch):
        hint = f"; {method.teacher_hint}" if method.teacher_hint else ""
        raise GzooError(f"teacher {name} is a {arch}; {method.name} recipes compress "
                        f"{', '.join(method.teachers)}{hint}")


def check_inputs(recipe: Recipe) -> None:
    """The recipe's local data and what its method needs, checked before any download or training (the recipe
    itself is checked on load)."""
    if not recipe.data.builtin:
        find_splits(recipe.data, Path(recipe.data.root))
    get_method(recipe.method).check_inputs(recipe)


def check_evaluation(recipe: Recipe, teacher: Teacher) -> None:
    """A classifier's student is evaluated as ``gzoo eval`` evaluates classifiers: on class folders, by top-1 and
    top-5 (the held-out crops have no labels); checked here, before anything runs."""
    config = read_config(teacher.directory)
    if not evaluation.is_classifier(config):
        return
    if recipe.evaluate.data == "held_out":
        raise GzooError(f"teacher {teacher.name} is a classifier, evaluated on labelled class folders: set "
                        "evaluate.data to a folder of class folders (0 ... 999 or WordNet ids), as gzoo eval reads")
    evaluation.plan(Path(recipe.evaluate.data), config, False, evaluation.Options(
        metrics=tuple(recipe.evaluate.metrics), max_images=recipe.evaluate.max_images))


def compress(recipe: Recipe, directory: Path, teacher_directory: Callable[[], Path] | None, resume: bool = False,
             progress: Progress | None = None, card: CardWriter | None = None, notify: Notify | None = None) -> dict:
    """Run the recipe's stages in ``directory`` (skipping finished ones when resuming); returns the summary.

    Ctrl-C ends the step in progress, saves its checkpoint and raises ``Interrupted`` saying where it stopped.
    """
    run = open_run(recipe, directory, teacher_directory, resume, progress)
    run.notify = notify
    results: dict[str, dict] = {}
    stages = run.method.stages(run.recipe)
    finished = [stage for stage in stages if run.directory.finished(stage) is not None]
    if resume and notify and run.processes.is_main:
        notify(f"resuming {directory}: " + (f"{', '.join(finished)} finished" if finished else "no stage finished"))
    for stage in stages:
        if (done := run.directory.finished(stage)) is not None:
            results[stage] = done
            continue
        torch.manual_seed(run.recipe.training.seed)  # a stage builds its modules alike in every process and on resume
        try:
            result = run.method.run[stage](run, results)
            if stage == "export":
                result = _write_student(run, result, stages, card)
        except StepsInterrupted as stop:
            raise Interrupted(f"interrupted in stage {stage} after step {stop.step} of {stop.total}, checkpoint "
                              "saved") from None
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted in stage {stage}; the stages before it are kept") from None
        results[stage] = run.directory.finish(stage, result)
    return results["export"]


def open_run(recipe: Recipe, directory: Path, teacher_directory: Callable[[], Path] | None, resume: bool = False,
             progress: Progress | None = None) -> Run:
    """Everything a run's stages need: inputs checked, teacher loaded, run directory prepared, data made."""
    method = get_method(recipe.method)
    processes = start_processes()
    check_inputs(recipe)  # the dataset and the teacher are checked before the run directory is made
    teacher = _load_teacher(recipe.teacher, teacher_directory, method, processes) if teacher_directory else None
    if teacher is not None:
        check_evaluation(recipe, teacher)
        method.check_model(recipe, teacher.model)
    run_directory = RunDirectory(directory, processes)
    run_directory.prepare(recipe.as_dict(), resume)
    if recipe.training.threads:
        torch.set_num_threads(recipe.training.threads)
    if recipe.data.builtin:
        if processes.is_main:
            make_skimage_photos(run_directory.path / "data", recipe.data)
        barrier(processes)
        recipe = replace(recipe, data=skimage_photos_settings(run_directory.path / "data", recipe.data))
    splits = find_splits(recipe.data, Path(recipe.data.root))
    return Run(recipe, method, run_directory, processes, teacher, TrainingData(recipe.data, splits), progress)


def _load_teacher(name: str, teacher_directory: Callable[[], Path], method: Method, processes: Processes) -> Teacher:
    if processes.is_main:  # the first process pulls the teacher into the cache, the others then read it
        directory = teacher_directory()
    barrier(processes)
    if not processes.is_main:
        directory = teacher_directory()
    arch = read_config(directory)["arch"]
    check_teacher(method, name, arch)
    # Every stage sees the teacher in [-1, 1], as the data and the students are, whatever range it works in.
    model = signed_range(load_model_dir(directory)).to(processes.device).requires_grad_(False)
    shown = name if not Path(name).exists() else str(Path(name).resolve())
    return Teacher(model, shown, Path(directory), arch, sha256_of(weights_path(directory)))


def _write_student(run: Run, exported: Exported, stages: list[str], card: CardWriter | None) -> dict:
    """The exported student as a model directory with its lineage in config.json, evaluated."""
    recipe = run.recipe
    height, width = exported.input_size
    directory = run.directory.path / STUDENT_DIR
    recipe_file = Path(recipe.path) if recipe.path else None
    config = {
        "method": recipe.method, "task": recipe.task, "teacher": run.teacher.name if run.teacher else None,
        "arch": exported.arch, "arch_args": exported.arch_args,
        "input": {"channels": input_channels(recipe.data), "height": height, "width": width},
        "recipe": str(recipe_file) if recipe_file else None,
        "lineage": {
            "recipe_sha256": hashlib.sha256(recipe_file.read_bytes()).hexdigest() if recipe_file else None,
            "resolved_recipe": recipe.as_dict(), "run_directory": str(run.directory.path.resolve()),
            "teacher_weights_sha256": run.teacher.weights_sha256 if run.teacher else None, "stages": stages,
            **exported.lineage,
        },
    }
    if run.processes.is_main:
        save_model_dir(directory, exported.packed or exported.state_dict, config, card(config) if card else None)
    barrier(run.processes)
    summary = {"student": str(directory), **exported.summary}
    if run.processes.is_main:
        summary |= _evaluate(run, directory)
    return summary


def _evaluate(run: Run, directory: Path) -> dict:
    """The stored eval row of the student on the held-out split (or the recipe's data), MACs against the teacher
    and, without ground truth, the identity baseline (the input taken as the output) beside it; not for label maps,
    where an input is no image."""
    recipe = run.recipe
    held_out = run.directory.path / HELD_OUT_DIR
    cityscapes = recipe.data.layout == "cityscapes"
    if not held_out.is_dir():
        staging = run.directory.path / f".{HELD_OUT_DIR}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for path in run.data.splits.held_out:
            if cityscapes:  # the frame's three files at their places under the root: still a Cityscapes root
                frame = run.data.splits.frames[path]
                for file in (frame.labels, frame.instance, frame.photo):
                    copy = staging / file.relative_to(recipe.data.root)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, copy)
            else:
                shutil.copyfile(path, staging / path.name)
        staging.rename(held_out)
    data = held_out if recipe.evaluate.data == "held_out" else Path(recipe.evaluate.data)
    mode = "auto" if data != held_out else recipe.data.layout if recipe.data.layout in ("paired", "cityscapes") \
        else "single"
    settings = recipe.evaluate
    teacher = run.teacher
    measured = evaluation.measure(directory, data, teacher.directory if teacher else None, list(settings.metrics),
                                  f"cpu: {machine.cpu_name()}", mode=mode, direction=recipe.data.direction,
                                  max_images=settings.max_images, reference=settings.reference,
                                  segmenter=settings.segmenter, labels=settings.labels,
                                  split="train" if cityscapes and data == held_out else None)
    student = load_model_dir(directory)
    shape = read_config(directory)["input"]
    example = torch.zeros(1, shape["channels"], shape["height"], shape["width"])
    student_macs = count_macs(student, example).macs_paper
    summary: dict[str, Any] = {"metrics": measured["metrics"], "student_macs_paper": student_macs,
                               "macs_input": f"{shape['height']}x{shape['width']}"}
    if teacher is None:
        return summary
    teacher_macs = count_macs(teacher.model.cpu().eval(), example).macs_paper
    summary |= {"teacher_macs_paper": teacher_macs, "macs_reduction": teacher_macs / student_macs}
    if recipe.data.layout not in ("paired", "cityscapes") and not evaluation.is_classifier(read_config(directory)):
        inputs, _ = held_out_inputs(recipe.data, run.data.splits, shape["height"])
        with torch.inference_mode():
            expected = run.teacher.model(inputs).clamp(-1, 1)
        summary["identity_psnr"] = psnr(inputs, expected)
    return summary
