"""The compression pipeline as methods see it: a method added from outside, multi-update steps, optimiser kinds,
refusals before training, and a short distillation that really learns."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from gzoo.compress import method as method_registry
from gzoo.compress.engine import Optimizer, Processes, Schedule, Trainer, TrainingSettings
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.pipeline import compress, open_run
from gzoo.compress.recipe import load_recipe
from gzoo.compress.settings import StageSettings
from gzoo.data.modeldir import read_config, save_model_dir
from gzoo.errors import GzooError
from gzoo.metrics.fidelity import psnr
from gzoo.models import create_model, load_model_dir

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo" / "vintagify_gan_compression.yaml"


@dataclass(frozen=True)
class ToySettings:
    steps: int = 6
    ngf: int = 4


def _fit(run, results: dict) -> dict:
    """Regress a small ResNet generator onto the teacher's outputs by L1."""
    student = create_model("resnet_generator", ngf=run.recipe.toy.ngf, n_blocks=1)

    def step(index: int):
        batch = run.data.batch(index, run.recipe.training.batch_size, run.recipe.training.seed)
        with torch.no_grad():
            expected = run.teacher.model(batch.inputs)
        loss = nn.functional.l1_loss(student(batch.inputs), expected)
        return {"G": loss}, {"L1": loss}

    run.train("fit", StageSettings(steps=run.recipe.toy.steps), {"student": student}, {"G": ["student"]}, step)
    return {"trained_steps": run.recipe.toy.steps}


def _toy_export(run, results: dict) -> Exported:
    state = run.final_state("fit")["student"]
    size = run.recipe.data.crop_size
    return Exported("resnet_generator", {"ngf": run.recipe.toy.ngf, "n_blocks": 1}, state, (size, size),
                    lineage={"fit": results["fit"]}, summary={"steps": results["fit"]["trained_steps"]})


@pytest.fixture
def toy_method():
    """A two-stage method that exists only in this test, registered without touching the pipeline."""
    toy = register_method(Method(name="toy-distill", teachers=("resnet_generator",),
                                 stages=lambda recipe: ["fit", "export"], run={"fit": _fit, "export": _toy_export},
                                 sections={"toy": ToySettings}))
    yield toy
    del method_registry.METHODS[toy.name]


@pytest.fixture
def tiny_teacher(tmp_path) -> Path:
    torch.manual_seed(1)  # not the recipe's seed 0, which would make the student start as the teacher
    model = create_model("resnet_generator", ngf=4, n_blocks=1)
    return save_model_dir(tmp_path / "teacher", model.state_dict(),
                          {"arch": "resnet_generator", "arch_args": {"ngf": 4, "n_blocks": 1}})


def _toy_recipe(tmp_path: Path, teacher: Path, **sections) -> Path:
    document = {"method": "toy-distill", "task": "toy", "teacher": str(teacher),
                "data": {"builtin": "skimage-photos", "load_size": 32, "crop_size": 32, "crops_per_photo": 2,
                         "held_out_crops_per_photo": 1},
                "training": {"batch_size": 2, "lr": 1e-3, "log_every": 1, "checkpoint_every": 2, "threads": 1},
                "toy": {"steps": 6}, "evaluate": {"metrics": ["psnr"]}, **sections}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_method_registered_from_a_test_runs_on_the_pipeline(tmp_path, toy_method, tiny_teacher):
    recipe = load_recipe(_toy_recipe(tmp_path, tiny_teacher))
    assert recipe.toy == ToySettings(steps=6, ngf=4)
    summary = compress(recipe, tmp_path / "run", lambda: tiny_teacher)
    assert summary["steps"] == 6 and 0 < summary["metrics"]["psnr"] < 100
    student = Path(summary["student"])
    config = read_config(student)
    assert config["method"] == "toy-distill" and config["lineage"]["stages"] == ["fit", "export"]
    assert config["lineage"]["fit"] == {"trained_steps": 6} and config["input"]["height"] == 32
    assert summary["teacher_macs_paper"] == summary["student_macs_paper"]  # same architecture, same size
    trained = load_model_dir(student)
    torch.testing.assert_close(trained.state_dict(), compress_state(tmp_path / "run"))
    # Finished: a second run with --resume repeats no stage and gives the same summary.
    assert compress(recipe, tmp_path / "run", lambda: tiny_teacher, resume=True) == summary


def compress_state(run: Path) -> dict:
    return torch.load(run / "fit" / "checkpoint.pt", weights_only=True)["modules"]["student"]


def test_a_key_of_another_method_is_named_with_that_method(tmp_path, toy_method, tiny_teacher):
    document = yaml.safe_load(DEMO.read_text())
    document["toy"] = {"steps": 3}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(GzooError, match=r"unknown section 'toy' \(a key of method toy-distill, not of "
                                        r"gan-compression\)"):
        load_recipe(path)
    # Every method that has the key, by name, whatever order the methods were imported in.
    with pytest.raises(GzooError, match=r"unknown section 'student' \(a key of methods ([a-z-]+, )*fritz, "
                                        r"gan-compression(, [a-z-]+)*, not of toy-distill\)"):
        load_recipe(_toy_recipe(tmp_path, tiny_teacher, student={"ngf": 8}))
    with pytest.raises(GzooError, match=r"'training.lambda_recon' \(a key of methods ([a-z-]+, )*"
                                        r"fast-gan-compression, gan-compression(, [a-z-]+)*, not of toy-distill\)"):
        load_recipe(_toy_recipe(tmp_path, tiny_teacher), overrides=["training.lambda_recon=3"])


@pytest.mark.parametrize(("override", "message"), [
    ("--set=method=omgd-typo", "unknown method 'omgd-typo'"),
    ("--teacher=original/resnet18", "teacher original/resnet18 is a resnet18; gan-compression recipes compress "
                                    "resnet_generator, mobile_resnet_generator"),
    ("--set=stages.distil={steps: 3}", "unknown key 'stages.distil' (did you mean distill?)"),
])
def test_a_recipe_the_method_cannot_run_fails_before_anything(compress_refused, override, message):
    compress_refused(DEMO, override, message=message)


def test_a_step_may_update_its_optimisers_in_order(tmp_path):
    """A step yielding two updates: the second sees the first already applied; SGD and Adam side by side."""
    first, second = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    nn.init.ones_(first.weight)
    nn.init.ones_(second.weight)
    seen = []

    def step(index: int):
        x = torch.ones(1, 1)
        loss_first = first(x).sum()  # d/dw = 1: SGD at lr 0.5 takes w from 1 to 0.5
        yield {"first": loss_first}, {"first": loss_first}
        seen.append(first.weight.item())
        loss_second = (second(first(x).detach()) - 3).pow(2).sum()
        yield {"second": loss_second}, {"second": loss_second}

    trainer = Trainer(tmp_path, {"first": first, "second": second},
                      {"first": Optimizer(("first",), kind="sgd", lr=0.5), "second": ["second"]},
                      TrainingSettings(log_every=1), Schedule(1, 0), 0.1, Processes(), tmp_path / "log.jsonl", "toy")
    trainer.run(step)
    assert seen == [0.5]
    assert isinstance(trainer.optimizers["first"], torch.optim.SGD)
    assert isinstance(trainer.optimizers["second"], torch.optim.Adam)
    assert trainer.optimizers["second"].param_groups[0]["betas"] == (0.5, 0.999)
    # Adam's first step moves by the lr, against the gradient of (0.5 w - 3)^2 (negative at w = 1).
    assert second.weight.item() == pytest.approx(1.1)


def test_a_short_distillation_learns(tmp_path, gzoo_home):
    """GAN Compression's distill stage, 200 steps at 32x32 on the vintagify teacher and real photos: the
    distillation loss falls and the student's held-out PSNR against the teacher rises above both its starting
    point and the identity baseline (the photo taken as the output). A sign error in a loss fails this."""
    from gzoo import api

    overrides = ["data.load_size=32", "data.crop_size=32", "data.crops_per_photo=4", "training.threads=1",
                 "stages.distill.steps=200", "stages.distill.steps_decay=0", "training.log_every=1",
                 "training.checkpoint_every=1000", "training.lr=2e-3"]
    recipe = load_recipe(DEMO, overrides)
    run = open_run(recipe, tmp_path / "run", lambda: api.model_directory(recipe.teacher))
    torch.manual_seed(recipe.training.seed)  # as the pipeline seeds each stage: whatever ran before in this process
    run.method.run["distill"](run, {})
    log = [yaml.safe_load(line) for line in run.log_file.read_text().splitlines()]
    distill = [row["G_distill"] for row in log]
    assert sum(distill[-20:]) / 20 < 0.6 * sum(distill[:20]) / 20

    from gzoo.compress.data import held_out_inputs

    inputs, _ = held_out_inputs(run.recipe.data, run.data.splits, 32)
    trained = create_model("mobile_resnet_generator", ngf=32, norm=run.teacher.norm).eval()
    trained.load_state_dict(run.final_state("distill")["student"])
    with torch.inference_mode():
        expected = run.teacher.model.cpu()(inputs).clamp(-1, 1)
        after = psnr(trained(inputs).clamp(-1, 1), expected)
    torch.manual_seed(recipe.training.seed)  # the stage's own start: the same initialisation and transfer
    start = _initial_student(run)
    with torch.inference_mode():
        before = psnr(start(inputs).clamp(-1, 1), expected)
    identity = psnr(inputs, expected)
    assert after > before + 1 and after > identity + 1, (before, after, identity)


def _initial_student(run) -> nn.Module:
    from gzoo.compress.transfer import init_normal, start_as_identity, transfer_largest_l1

    student = init_normal(create_model("mobile_resnet_generator", ngf=32, norm=run.teacher.norm))
    start_as_identity(student, transfer_largest_l1(run.teacher.model, student))
    return student.eval()


def test_ctrl_c_saves_the_step_and_says_how_to_resume(tmp_path, gzoo_home):
    """Ctrl-C during training: one line with the stage, the step reached and the --resume command; that command
    goes on from the saved step, says so, and the log continues without running back."""
    import json
    import os
    import shlex
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    tiny = ["--set=data.load_size=32", "--set=data.crop_size=32", "--set=data.crops_per_photo=2",
            "--set=training.threads=1", "--set=training.log_every=1", "--set=training.checkpoint_every=1000",
            "--set=stages.distill.steps=100000"]
    env = {**os.environ, "GZOO_HOME": str(gzoo_home)}
    process = subprocess.Popen([sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run), *tiny],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run / "log.jsonl").is_file() or len((run / "log.jsonl").read_text().splitlines()) < 3:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.startswith("gzoo: error:")]
    assert process.returncode == 130 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "interrupted in stage distill after step " in lines[0] and "checkpoint saved" in lines[0]
    step = int(lines[0].split("after step ")[1].split()[0])
    assert torch.load(run / "distill" / "checkpoint.pt", weights_only=True)["step"] == step
    command = shlex.split(lines[0].split("continue with: ")[1])
    assert command[0] == "gzoo" and command[-1] == "--resume"

    resumed = subprocess.Popen([sys.executable, "-m", "gzoo", *command[1:]], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    while len((run / "log.jsonl").read_text().splitlines()) < step + 3:
        assert resumed.poll() is None, resumed.stderr.read()
        assert time.monotonic() < deadline + 120
        time.sleep(0.05)
    resumed.send_signal(signal.SIGINT)
    _, stderr = resumed.communicate(timeout=120)
    assert "resuming " in stderr and "no stage finished" in stderr
    assert f"distill: resuming from step {step} of 100500" in stderr  # 500 decay steps follow
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))


@pytest.mark.parametrize(("prepare", "resume", "message"), [
    ("stray file", False, "holds files but no gzoo run; give -o a new or empty directory"),
    ("stray file", True, "holds files but no gzoo run (no recipe.yaml); give -o the directory of a gzoo compress run"),
    ("nothing", True, "holds no run to resume; leave out --resume to start one there"),
])
def test_an_output_folder_without_a_run_says_what_to_do(tmp_path, run_gzoo, prepare, resume, message):
    run = tmp_path / "run"
    if prepare == "stray file":
        run.mkdir()
        (run / "notes.txt").write_text("mine")
    result = run_gzoo("compress", str(DEMO), "-o", str(run), *(["--resume"] if resume else []))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    if prepare == "stray file":
        assert [p.name for p in run.iterdir()] == ["notes.txt"]  # nothing of the user's touched
    else:
        assert not run.exists()
