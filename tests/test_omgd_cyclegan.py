"""OMGD's CycleGAN setting (the original's --distiller cycleganbest): the teacher and student phases alternate as
the original's trainer runs them, the student learns from the teacher of the best FID so far and never from
domain B or a discriminator, the recipes carry the scripts' settings, and a killed run resumes to the same
student."""

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from photos import photo_crops, write_images
from processes import alone_and_on_two, kill_when

from gzoo.compress import omgd
from gzoo.compress.data import TrainingData
from gzoo.compress.omgd import Alternation
from gzoo.compress.pipeline import compress
from gzoo.compress.recipe import load_recipe
from gzoo.data.modeldir import read_weights, save_model_dir, sha256_of, weights_path
from gzoo.errors import GzooError
from gzoo.models import create_model, load_model_dir
from gzoo.models.patchgan import PatchGanDiscriminator

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
H2Z = RECIPES / "omgd" / "horse2zebra-resnet.yaml"


@pytest.fixture
def offline_inception(inception_weights, monkeypatch):
    monkeypatch.setenv("GZOO_INCEPTION_WEIGHTS", str(inception_weights))
    return str(inception_weights)


@pytest.fixture
def unpaired(tmp_path) -> Path:
    """Photo crops as domain A (6 images, 2 held out), other photos' crops as domain B and as the FID reference."""
    root = tmp_path / "unpaired"
    write_images(root / "trainA", photo_crops(("astronaut", "coffee", "chelsea"), 64, 2))
    write_images(root / "trainB", photo_crops(("rocket", "immunohistochemistry"), 64, 2))
    write_images(root / "realB", photo_crops(("rocket", "immunohistochemistry", "retina"), 64, 2))
    return root


@pytest.fixture
def tiny_teacher(tmp_path) -> Path:
    """The run's reference generator (what the student is measured against), small."""
    torch.manual_seed(3)
    model = create_model("mobile_resnet_generator", ngf=4, n_blocks=2)
    return save_model_dir(tmp_path / "teacher", model.state_dict(), {"arch": "mobile_resnet_generator",
                                                                     "arch_args": {"ngf": 4, "n_blocks": 2}})


def tiny(data: Path, teacher_steps: int, eval_every: int, n_dis: int, *more: str) -> list[str]:
    """The horse2zebra recipe shrunk to seconds: 64x64, narrow networks, the offline feature network."""
    return [f"data.root={data}", "data.load_size=64", "data.crop_size=64", "data.flip=false",
            "data.held_out_fraction=0.34", "teachers.wide_ngf=8", "student.ngf=4", "training.ndf=8",
            "training.lambda_cd=10", "training.perceptual=inception", "training.threads=1", "training.log_every=1",
            "training.lr=2e-3", f"training.n_dis={n_dis}", f"cycle.eval_every={eval_every}", "cycle.pool_size=2",
            f"cycle.reference={data / 'realB'}", f"stages.distill.steps={teacher_steps}",
            "stages.distill.steps_decay=0", "evaluate.metrics=[psnr]", "evaluate.data=held_out",
            "evaluate.reference=null", *more]


def _modules(run: Path) -> dict:
    return torch.load(run / "distill" / "checkpoint.pt", weights_only=True)["modules"]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


class ScriptedFid:
    """Stands in for HeldOutScorer (``scorer``): its scorer returns the given FIDs in turn, the teacher's
    (ngf 8) and the student's (ngf 4) apart (1.0 for every student when none are given), and keeps the weights
    it scored."""

    def __init__(self, scores: list[float], student: list[float] | None = None) -> None:
        self.scores, self.scored = list(scores), []
        self.student_scores, self.student_scored = student, []

    def scorer(self, *args, **kwargs) -> Callable[[torch.nn.Module], float]:
        return self.score

    def score(self, model: torch.nn.Module) -> float:
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        if next(iter(weights.values())).shape[0] == 4:  # the student's first convolution: ngf 4
            self.student_scored.append(weights)
            return 1.0 if self.student_scores is None else self.student_scores[len(self.student_scored) - 1]
        self.scored.append(weights)
        return self.scores[len(self.scored) - 1]


@pytest.fixture
def pretrained(tmp_path) -> Callable[[int], Path]:
    """``pretrained(seed)``: a model directory of an A -> B mobile ResNet (ngf 8, batch norms, whose running
    statistics a forward pass in training mode would move), to be the frozen teacher."""

    def make(seed: int) -> Path:
        torch.manual_seed(seed)
        model = create_model("mobile_resnet_generator", ngf=8, norm="batch")
        for name, buffer in model.named_buffers():  # statistics a pass in eval mode uses, unlike fresh ones
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2)
        return save_model_dir(tmp_path / f"pretrained-{seed}", model.state_dict(),
                              {"arch": "mobile_resnet_generator", "arch_args": {"ngf": 8, "norm": "batch"}})

    return make


# --- the schedule -----------------------------------------------------------------------------------------------

def _original_timeline(epochs: int, freq: int, n_dis: int) -> list[str]:
    """trainer.py's loop at one step per epoch: a teacher epoch, and after every freq-th and the last one, the
    student's n_dis * freq epochs (optimize_student_parameters)."""
    timeline = []
    for epoch in range(1, epochs + 1):
        timeline.append("T")
        if epoch % freq == 0 or epoch == epochs:
            timeline += ["S"] * (n_dis * freq)
    return timeline


@pytest.mark.parametrize("constant, decay, every, n_dis", [(5, 2, 3, 2), (6, 0, 3, 4), (2, 0, 5, 1), (4, 4, 1, 3)])
def test_the_phases_alternate_as_the_originals_trainer_runs_them(constant, decay, every, n_dis):
    schedule = Alternation(constant, decay, every=every, student_steps=n_dis * every)
    phases = [schedule.phase(step) for step in range(schedule.total)]
    assert ["S" if p.student else "T" for p in phases] == _original_timeline(constant + decay, every, n_dis)
    assert [p.step for p in phases if not p.student] == list(range(constant + decay))
    assert [p.step for p in phases if p.student] == list(range(len(schedule.evaluations) * n_dis * every))
    with pytest.raises(ValueError):
        schedule.phase(schedule.total)
    # A frozen teacher: the student phases alone, each at the learning rate it has beside the pair.
    alone = Alternation(constant, decay, every=every, student_steps=n_dis * every, teachers=False)
    assert [alone.phase(step) for step in range(alone.total)] == [p for p in phases if p.student]
    assert [alone.factor(step) for step in range(alone.total)] == \
        [schedule.factor(step) for step, p in enumerate(phases) if p.student]
    with pytest.raises(ValueError):
        alone.phase(alone.total)


def test_a_student_phase_keeps_the_learning_rate_of_the_teacher_step_before_it():
    schedule = Alternation(4, 3, every=3, student_steps=2)  # evaluations after teacher steps 3, 6 and 7
    teacher = [schedule.factor(s) for s in range(schedule.total) if not schedule.phase(s).student]
    student = [schedule.factor(s) for s in range(schedule.total) if schedule.phase(s).student]
    assert teacher == [1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5]  # the engine's linear decay over 3 steps (x / 4)
    assert student == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5]  # those of teacher steps 3, 6 and 7


# --- recipes ----------------------------------------------------------------------------------------------------

# The scripts' settings: file, student ngf, teacher ngf, save_epoch_freq, lambda_CD, steps per epoch.
PUBLISHED = [
    ("horse2zebra-resnet", 16, 64, 10, 500, 1334),
    ("horse2zebra-resnet-s12", 12, 48, 12, 500, 1334),
    ("horse2zebra-resnet-s8", 8, 48, 8, 500, 1334),
    ("summer2winter-resnet", 16, 64, 6, 100, 1231),
    ("summer2winter-resnet-s12", 12, 48, 6, 100, 1231),
    ("summer2winter-resnet-s8", 8, 48, 6, 100, 1231),
]


@pytest.mark.parametrize("row", PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_the_cyclegan_recipes_carry_the_scripts_settings(row):
    name, ngf, teacher_ngf, freq, cd, per_epoch = row
    task = name.split("-")[0]
    recipe = load_recipe(RECIPES / "omgd" / f"{name}.yaml")
    assert (recipe.method, recipe.student.family, recipe.student.ngf) == ("omgd", "resnet", ngf)
    assert (recipe.teachers.wide_ngf, recipe.teachers.deep_ngf, recipe.teachers.wide_from) == (teacher_ngf, None, None)
    assert recipe.data.layout == "unpaired" and recipe.data.direction == "AtoB"
    training, cycle, distill = recipe.training, recipe.cycle, recipe.stages.distill
    assert (training.batch_size, training.seed, training.lr, training.beta1) == (1, 233, 2e-4, 0.5)
    assert (training.gan_mode, training.ndf, training.n_dis, training.lambda_cd) == ("lsgan", 64, 4, cd)
    assert (training.lambda_ssim, training.lambda_style, training.lambda_feature, training.lambda_tv) == \
        (10, 1e4, 10, 1e-5)
    assert (cycle.lambda_cycle, cycle.lambda_identity, cycle.pool_size) == (10, 0.5, 50)
    assert cycle.eval_every == freq * per_epoch  # --save_epoch_freq, in steps
    assert (distill.steps, distill.steps_decay) == (100 * per_epoch, 100 * per_epoch)  # --nepochs(_decay) 100
    assert cycle.reference == recipe.evaluate.reference == f"real_stat/{task}_B.npz"
    # The exported student: the zoo's omgd/<task>-resnet for ngf 16 (the zoo has no S12/S8 CycleGAN entries).
    zoo = {m["id"]: m for m in yaml.safe_load((RECIPES.parent / "zoo.yaml").read_text())["models"]}
    entry = zoo[f"omgd/{task}-resnet"]
    assert recipe.teacher == entry["teacher"] == f"original/{task}"
    assert entry["arch"] == omgd.ARCHS["resnet"][0]
    if ngf == 16:
        assert {"ngf": recipe.student.ngf} == entry["arch_args"]


@pytest.mark.parametrize("overrides, message", [
    (["cycle=null"], "needs a 'cycle' section"),
    (["teachers.deep_ngf=16"], "one teacher pair"),
    (["student.family=unet"], "mobile ResNets only"),
    (["cycle.reference=null", "evaluate.reference=null"], "picks its best teacher by FID"),
    (["cycle.eval_every=0"], "cycle.eval_every"),
    (["data.layout=paired"], "the 'cycle' section is OMGD's CycleGAN setting"),
])
def test_a_cyclegan_recipe_omgd_cannot_run_is_refused_in_one_line(overrides, message):
    with pytest.raises(GzooError, match=message) as failure:
        load_recipe(H2Z, overrides)
    assert "\n" not in str(failure.value)


# --- runs on the pipeline ---------------------------------------------------------------------------------------

def test_the_student_never_sees_domain_b_nor_a_discriminator(tmp_path, unpaired, tiny_teacher, monkeypatch):
    """Every B image of the student's batches changed: every weight of the run ends the same. Every B image of the
    teachers' batches changed: the teachers and discriminators end otherwise. The discriminators run only in the
    teachers' steps (2 calls for the generators' update, 4 for theirs)."""
    recipe = load_recipe(H2Z, tiny(unpaired, 2, 1, 2), teacher=str(tiny_teacher))
    teacher_steps = Alternation(2, 0, every=1, student_steps=2).teacher_steps
    original_batch, original_forward = TrainingData.batch, PatchGanDiscriminator.forward
    calls = []

    def counted(self, x):
        calls.append(1)
        return original_forward(self, x)

    def changed(which: str):
        def batch(self, step, *args, **kwargs):
            drawn = original_batch(self, step, *args, **kwargs)
            student_batch = step >= teacher_steps  # the student's batches come after the teacher's
            if which == ("student" if student_batch else "teacher"):
                return type(drawn)(drawn.inputs, -drawn.targets.flip(3), drawn.keys)
            return drawn
        return batch

    states = {}
    for which in ("none", "student", "teacher"):
        monkeypatch.setattr(TrainingData, "batch", changed(which))
        monkeypatch.setattr(PatchGanDiscriminator, "forward", counted)
        monkeypatch.setattr(omgd, "HeldOutScorer", ScriptedFid([4.0, 3.0]).scorer)
        calls.clear()
        compress(recipe, tmp_path / f"run-{which}", lambda: tiny_teacher)
        states[which] = _modules(tmp_path / f"run-{which}")
        assert len(calls) == 6 * teacher_steps
    for name, module in states["none"].items():
        for key, value in module.items():
            assert torch.equal(value, states["student"][name][key]), f"{name}.{key}"
    for name in ("teacher_a", "teacher_b", "discriminator_a", "discriminator_b"):
        assert any(not torch.equal(v, states["teacher"][name][k]) for k, v in states["none"][name].items()), name


@pytest.mark.parametrize("scores, best", [([5.0, 9.0], 0), ([5.0, 3.0], 1)], ids=["kept", "switched"])
def test_the_teacher_of_the_best_fid_so_far_trains_the_student(tmp_path, unpaired, tiny_teacher, monkeypatch, scores,
                                                               best):
    """Two evaluations; the student's second phase learns from the teacher scored best, which is the first one
    when the second scores worse: each guide the student gets is that teacher's output for the student's input."""
    fid = ScriptedFid(scores)
    monkeypatch.setattr(omgd, "HeldOutScorer", fid.scorer)
    guides = []
    original = omgd.FrozenOutputs.__call__

    def recorded(self, inputs, keys):
        output = original(self, inputs, keys)
        guides.append((inputs.clone(), output[0].clone()))
        return output

    monkeypatch.setattr(omgd.FrozenOutputs, "__call__", recorded)
    recipe = load_recipe(H2Z, tiny(unpaired, 2, 1, 2), teacher=str(tiny_teacher))
    summary = compress(recipe, tmp_path / "run", lambda: tiny_teacher)
    assert len(fid.scored) == 2 and len(guides) == 4  # 2 phases of n_dis * eval_every = 2 student steps
    teachers = []
    for scored in fid.scored:
        model = create_model("mobile_resnet_generator", ngf=8, norm="instance").eval()
        model.load_state_dict(scored)
        teachers.append(model)
    assert any(not torch.equal(v, fid.scored[1][k]) for k, v in fid.scored[0].items())  # the teacher trained
    with torch.no_grad():
        for phase, teacher in ((0, 0), (1, best)):
            for inputs, guide in guides[2 * phase:2 * phase + 2]:
                torch.testing.assert_close(guide, teachers[teacher](inputs), rtol=0, atol=1e-6)
                if phase:
                    assert not torch.allclose(guide, teachers[1 - teacher](inputs), atol=1e-4)
    state = _modules(tmp_path / "run")
    assert state["fid"]["scores"].tolist() == scores and int(state["fid"]["best_index"]) == best
    for key, value in fid.scored[best].items():
        assert torch.equal(state["teacher_best"][key], value), key
    assert summary["teacher_fid"]["scores"] == scores  # also in the run summary and the student's lineage


def test_the_best_scored_student_is_exported_not_the_last(tmp_path, unpaired, tiny_teacher, monkeypatch):
    """Two phases of 2 student steps, the student scored after each: the second of 4 scores best, so the
    exported student holds the weights scored then (the end of the first phase), not the final ones; its FIDs are
    in done.json, the summary and the lineage, and the logged fid_student lines are the steps it was scored at."""
    fid = ScriptedFid([4.0, 3.0], student=[6.0, 2.0, 5.0, 2.5])
    monkeypatch.setattr(omgd, "HeldOutScorer", fid.scorer)
    recipe = load_recipe(H2Z, tiny(unpaired, 2, 1, 2), teacher=str(tiny_teacher))
    summary = compress(recipe, tmp_path / "run", lambda: tiny_teacher)
    assert len(fid.scored) == 2 and len(fid.student_scored) == 4
    assert all(any(not torch.equal(v, later[k]) for k, v in earlier.items())  # the student trained in between
               for earlier, later in zip(fid.student_scored, fid.student_scored[1:], strict=False))
    exported = load_model_dir(Path(summary["student"]))
    state, final = exported.state_dict(), _modules(tmp_path / "run")
    for key, value in fid.student_scored[1].items():
        assert torch.equal(state[key], value), key
        assert torch.equal(final["student_best"][key], value), key
    assert any(not torch.equal(v, final["student"][k]) for k, v in state.items())  # not the last student
    expected = {"after_student_steps": [1, 2, 3, 4], "scores": [6.0, 2.0, 5.0, 2.5], "best": 2.0,
                "best_after_student_steps": 2, "exported": "best"}
    done = json.loads((tmp_path / "run" / "distill" / "done.json").read_text())
    config = json.loads((Path(summary["student"]) / "config.json").read_text())
    assert done["student_fid"] == summary["student_fid"] == config["lineage"]["student_fid"] == expected
    # T, then the phase's 2 student steps each scored after its update; twice
    assert [(r["step"], r["fid_student"]) for r in _log(tmp_path / "run") if "fid_student" in r] == \
        [(2, 6.0), (3, 2.0), (5, 5.0), (6, 2.5)]


def test_a_short_run_learns_and_repeats_with_its_seed(tmp_path, unpaired, tiny_teacher, monkeypatch):
    """One teacher step, then 12 student steps from that fixed teacher: the student's loss falls; the same seed
    gives the same losses, another seed others."""
    losses = {}
    for name, seed in (("one", 233), ("again", 233), ("other", 1)):
        monkeypatch.setattr(omgd, "HeldOutScorer", ScriptedFid([1.0]).scorer)
        recipe = load_recipe(H2Z, tiny(unpaired, 1, 1, 12, f"training.seed={seed}"), teacher=str(tiny_teacher))
        compress(recipe, tmp_path / name, lambda: tiny_teacher)
        losses[name] = [r["G_ssim"] + r["G_style"] + r["G_feature"] + r["G_cd"] for r in _log(tmp_path / name)
                        if "G_ssim" in r]
    student = losses["one"]
    assert len(student) == 12
    assert sum(student[-3:]) / 3 < 0.8 * sum(student[:3]) / 3, student
    assert losses["again"] == student and losses["other"] != student


def _killed_and_resumed(tmp_path: Path, overrides: list[str], teacher: Path, run_gzoo, gzoo_home: Path,
                        inception: str, killed: Callable[[Path], None] = lambda run: None) -> tuple[dict, Path]:
    """A run uninterrupted in ``tmp_path/whole``, and one killed (SIGKILL) at its first checkpoint then resumed in
    ``tmp_path/killed`` (``killed`` checks it between the two); both end with the same metrics and
    ``distill/done.json``, which is returned with the killed run's folder."""
    args = ["compress", str(H2Z), "--teacher", str(teacher), *(arg for o in overrides for arg in ("--set", o))]
    whole = run_gzoo(*args, "-o", str(tmp_path / "whole"), "--json")
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    env = {**os.environ, "GZOO_HOME": str(gzoo_home), "GZOO_INCEPTION_WEIGHTS": inception}
    kill_when([sys.executable, "-m", "gzoo", *args, "-o", str(run)], env, (run / "distill" / "checkpoint.pt").is_file,
              240)
    assert not (run / "distill" / "done.json").exists()
    killed(run)
    resumed = run_gzoo(*args, "-o", str(run), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["metrics"] == json.loads(whole.stdout)["metrics"]
    done = json.loads((tmp_path / "whole" / "distill" / "done.json").read_text())
    assert done == json.loads((run / "distill" / "done.json").read_text())
    return done, run


def test_a_killed_run_resumes_to_the_same_student_and_fids(tmp_path, unpaired, tiny_teacher, run_gzoo, gzoo_home,
                                                           offline_inception):
    """Real FIDs of the teacher on the held-out crops against real B images; killed (SIGKILL) after a checkpoint
    (step 3, after the first evaluation) and resumed, the run ends with the uninterrupted run's weights, FIDs and
    metrics."""
    done, run = _killed_and_resumed(tmp_path, tiny(unpaired, 4, 2, 1, "training.checkpoint_every=3"), tiny_teacher,
                                    run_gzoo, gzoo_home, offline_inception)
    fids = done["teacher_fid"]
    assert fids["after_teacher_steps"] == [2, 4] and all(s > 0 for s in fids["scores"])
    assert fids["best"] == min(fids["scores"])
    student = done["student_fid"]  # scored after each phase's 2 steps (eval_every 2, n_dis 1)
    assert student["after_student_steps"] == [2, 4] and all(s > 0 for s in student["scores"])
    assert student["best"] == min(student["scores"]) and student["exported"] == "best"
    final, again = _modules(tmp_path / "whole"), _modules(run)
    exported = load_model_dir(tmp_path / "whole" / "student").state_dict()
    for key, value in final["student_best"].items():
        assert torch.equal(exported[key], value), key
    for name, module in final.items():
        for key, value in module.items():
            assert torch.equal(value, again[name][key]), f"{name}.{key}"
    assert [r["step"] for r in _log(run)] == list(range(1, 9))  # 4 teacher and 2 x 2 student steps


def test_two_processes_give_the_first_teacher_and_student_losses_of_one(tmp_path, unpaired, tiny_teacher, gzoo_home,
                                                                        offline_inception):
    """torchrun with 2 CPU processes (gloo), each on half of the global batch of 4, logs what one process does: the
    pair's first step (the pools of 2 full after its first 2 fakes, so the rest are drawn: the pools hold the
    global batch), the teacher's FID, then the student's first step and its FID."""
    overrides = [arg for o in tiny(unpaired, 1, 1, 1, "training.batch_size=4") for arg in ("--set", o)]
    env = {**os.environ, "GZOO_HOME": str(gzoo_home), "GZOO_INCEPTION_WEIGHTS": offline_inception}
    alone_and_on_two(["compress", str(H2Z), "--teacher", str(tiny_teacher), *overrides], tmp_path / "one",
                     tmp_path / "two", env)
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2]  # 1 teacher step, 1 student step
    teacher = ("G_A", "G_B", "G_cycle_A", "G_cycle_B", "G_idt_A", "G_idt_B", "D_A", "D_B")
    student = ("G_ssim", "G_style", "G_feature", "G_tv", "G_cd")
    for step, terms in ((0, teacher), (1, student)):
        for term in terms:
            assert two[step][term] == pytest.approx(one[step][term], rel=1e-5), term
    # The FIDs after one update agree less closely: a conv bias before an instance norm has no true gradient, so
    # Adam's first step moves it by +-lr whatever the sign of its rounding noise, and FID on 2 images magnifies it.
    for term in ("fid_teacher", "fid_student"):
        assert two[1][term] == pytest.approx(one[1][term], rel=1e-3), term


# --- a frozen pretrained teacher ------------------------------------------------------------------------------

def test_a_frozen_pretrained_teacher_teaches_the_student_the_phases_it_gets_beside_the_pair(
        tmp_path, unpaired, tiny_teacher, pretrained, monkeypatch):
    """teachers.wide_from a model directory: no pair trained, no teacher scored; the student learns from the
    pretrained teacher's outputs for each of its steps, which are those of the same recipe's student beside a
    trained pair (inputs, learning rates, FID evaluations); the teacher ends as loaded (its batch norms' running
    statistics included) and the summary and lineage name it."""
    source = pretrained(5)
    # 2 + 2 teacher steps, 2 phases of 2 student steps; no image pool (the pair's discriminators see its fakes)
    more = ("stages.distill.steps_decay=2", "cycle.pool_size=0")
    guides, teachers = [], []
    original = omgd.FrozenOutputs.__call__

    def recorded(self, inputs, keys):
        output = original(self, inputs, keys)
        guides.append((inputs.clone(), output[0].clone()))
        teachers.append(self.model)
        return output

    monkeypatch.setattr(omgd.FrozenOutputs, "__call__", recorded)
    runs = {}
    for name, wide_from in (("online", ()), ("frozen", (f"teachers.wide_from={source}",))):
        fid = ScriptedFid([4.0, 3.0], student=[2.0, 5.0])
        monkeypatch.setattr(omgd, "HeldOutScorer", fid.scorer)
        guides.clear()
        recipe = load_recipe(H2Z, tiny(unpaired, 2, 2, 1, *more, *wide_from), teacher=str(tiny_teacher))
        summary = compress(recipe, tmp_path / name, lambda: tiny_teacher)
        runs[name] = (fid, list(guides), [r for r in _log(tmp_path / name) if "G_ssim" in r], summary)
    fid, frozen_guides, lines, summary = runs["frozen"]
    assert fid.scored == [] and len(fid.student_scored) == 2  # no teacher FID, the student's after each phase
    assert len(frozen_guides) == 4 and [r["step"] for r in lines] == [1, 2, 3, 4]
    online_guides, online_lines = runs["online"][1], runs["online"][2]
    for (inputs, _), (online_inputs, _) in zip(frozen_guides, online_guides, strict=True):
        assert torch.equal(inputs, online_inputs)
    assert [r["lr"] for r in lines] == [r["lr"] for r in online_lines] == pytest.approx([2e-3, 2e-3, 4e-3 / 3,
                                                                                          4e-3 / 3])
    model = create_model("mobile_resnet_generator", ngf=8, norm="batch").eval()
    model.load_state_dict(read_weights(source))
    frozen = teachers[-1]
    assert not frozen.training and all(not p.requires_grad for p in frozen.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(frozen.state_dict()[key], value), key
    with torch.no_grad():
        for inputs, guide in frozen_guides:
            torch.testing.assert_close(guide, model(inputs), rtol=0, atol=1e-6)
    state = _modules(tmp_path / "frozen")
    assert set(state) == {"student", "student_best", "student_fid", "connectors"}  # nothing of a pair
    for key, value in fid.student_scored[0].items():  # the best scored student is kept, not the last
        assert torch.equal(state["student_best"][key], value), key
    named = {"from": str(source.resolve()), "frozen": True, "weights_sha256": sha256_of(weights_path(source))}
    config = json.loads((Path(summary["student"]) / "config.json").read_text())
    assert summary["teachers"] == config["lineage"]["teachers"] == {"a": named}
    assert "teacher_fid" not in summary and "teacher_fid" not in config["lineage"]
    assert summary["student_fid"]["scores"] == [2.0, 5.0] and summary["student_fid"]["exported"] == "best"


def test_the_students_update_depends_on_the_pretrained_teacher_not_on_domain_b(tmp_path, unpaired, tiny_teacher,
                                                                             pretrained, monkeypatch):
    """One student step from a frozen teacher: every B image changed, the student and connectors end the same;
    another teacher (another directory, or the recipe's teacher: wide_from: teacher), they end otherwise."""
    original_batch = TrainingData.batch

    def other_b(self, *args, **kwargs):
        drawn = original_batch(self, *args, **kwargs)
        return type(drawn)(drawn.inputs, -drawn.targets.flip(3), drawn.keys)

    states, summaries = {}, {}
    for name, source, batch in (("as-is", pretrained(5), original_batch), ("other-b", pretrained(5), other_b),
                                ("other-teacher", pretrained(6), original_batch),
                                ("recipe-teacher", "teacher", original_batch)):
        monkeypatch.setattr(TrainingData, "batch", batch)
        monkeypatch.setattr(omgd, "HeldOutScorer", ScriptedFid([]).scorer)
        recipe = load_recipe(H2Z, tiny(unpaired, 1, 1, 1, f"teachers.wide_from={source}"), teacher=str(tiny_teacher))
        summaries[name] = compress(recipe, tmp_path / name, lambda: tiny_teacher)
        states[name] = _modules(tmp_path / name)
        assert [r["step"] for r in _log(tmp_path / name)] == [1]
    for module in ("student", "connectors"):
        same = states["as-is"][module]
        assert all(torch.equal(v, states["other-b"][module][k]) for k, v in same.items()), module
        for other in ("other-teacher", "recipe-teacher"):
            assert any(not torch.equal(v, states[other][module][k]) for k, v in same.items()), (module, other)
    assert summaries["recipe-teacher"]["teachers"] == {"a": {"from": str(tiny_teacher), "frozen": True}}


def _config_only(directory: Path, arch: str, arch_args: dict | None = None) -> Path:
    """A model directory's config.json alone: the compatibility check reads no weights."""
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"arch": arch, "arch_args": arch_args or {}}))
    return directory


@pytest.mark.parametrize("arch, cd, message", [
    ("spade_generator", 0, "cannot take a (1, 3, 64, 64) input (a GauGAN for cityscapes takes a one-hot label map"),
    ("drn_d_105_seg", 0, "gives (1, 19, 64, 64) for a (1, 3, 64, 64) input"),
    ("unet_generator", 0, "cannot take a (1, 3, 64, 64) input"),
    ("fritz_style_net", 10, "has no layer model.9 to distil channels from"),
    ("fritz_style_net", 0, None),  # an image-to-image generator: taught from without channel distillation
])
def test_an_incompatible_pretrained_teacher_is_refused_in_one_line_before_the_run(tmp_path, unpaired, tiny_teacher,
                                                                                 arch, cd, message):
    source = _config_only(tmp_path / arch, arch)
    recipe = load_recipe(H2Z, tiny(unpaired, 1, 1, 1, f"teachers.wide_from={source}", f"training.lambda_cd={cd}"),
                         teacher=str(tiny_teacher))
    if message is None:
        omgd._check_inputs(recipe)
        return
    with pytest.raises(GzooError) as failure:
        compress(recipe, tmp_path / "run", lambda: tiny_teacher)
    assert message in str(failure.value) and f"teachers.wide_from: {source} ({arch})" in str(failure.value)
    assert "\n" not in str(failure.value) and not (tmp_path / "run").exists()


def test_a_killed_run_with_a_pretrained_teacher_resumes_to_the_same_student(tmp_path, unpaired, tiny_teacher,
                                                                            pretrained, run_gzoo, gzoo_home,
                                                                            offline_inception):
    """Real FIDs of the student; killed (SIGKILL) after the step-3 checkpoint of 4 student steps and resumed, the
    run ends with the uninterrupted run's weights, FIDs and metrics."""
    more = ("training.checkpoint_every=3", f"teachers.wide_from={pretrained(5)}")

    def killed_after_the_first_score(run: Path) -> None:  # before the second
        assert _modules(run)["student_fid"]["scores"][0] > 0

    done, run = _killed_and_resumed(tmp_path, tiny(unpaired, 4, 2, 1, *more), tiny_teacher, run_gzoo, gzoo_home,
                                    offline_inception, killed_after_the_first_score)
    student = done["student_fid"]  # 2 phases of 2 steps (eval_every 2, n_dis 1), scored after each
    assert student["after_student_steps"] == [2, 4] and all(s > 0 for s in student["scores"])
    final, again = _modules(tmp_path / "whole"), _modules(run)
    for name, module in final.items():
        for key, value in module.items():
            assert torch.equal(value, again[name][key]), f"{name}.{key}"
    assert [r["step"] for r in _log(run)] == [1, 2, 3, 4]
