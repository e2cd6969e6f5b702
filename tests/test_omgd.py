"""OMGD: the student learns from the teachers' outputs only, each loss term is what an independent computation
gives on real photos, the shared discriminator shares what n_share says, the recipes carry the scripts' settings,
and runs on the pipeline resume exactly, refuse VGG16 offline at once and match across 2 torchrun processes."""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from offline import refuse_network
from photos import photo, photo_crops, write_images
from PIL import Image
from processes import alone_and_on_two, kill_when

from gzoo.compress import perceptual
from gzoo.compress.losses import SsimSide, ssim, ssim_map
from gzoo.compress.omgd import (
    TAPS,
    GlobalBatchNorm2d,
    OmgdTrainingSettings,
    SharedPatchGan,
    channel_distillation,
    student_terms,
)
from gzoo.compress.pipeline import compress
from gzoo.compress.recipe import load_recipe
from gzoo.data.modeldir import save_model_dir
from gzoo.metrics import count_params
from gzoo.models import create_model, load_model_dir

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
DEMO = RECIPES / "demo" / "vintagify_omgd.yaml"
FROZEN_DEMO = RECIPES / "demo" / "vintagify_omgd_frozen.yaml"
# The demo shrunk to seconds: 64x64 crops, narrow networks, a few steps.
TINY = ["--set", "data.load_size=64", "--set", "data.crop_size=64", "--set", "data.crops_per_photo=2",
        "--set", "data.held_out_crops_per_photo=1", "--set", "teachers.wide_ngf=8", "--set", "teachers.deep_ngf=4",
        "--set", "student.ngf=4", "--set", "training.ndf=8", "--set", "stages.distill.steps=3",
        "--set", "stages.distill.steps_decay=1", "--set", "training.log_every=1",
        "--set", "training.checkpoint_every=2", "--set", "evaluate.metrics=[psnr]", "--set", "training.batch_size=1"]


@pytest.fixture
def offline_inception(inception_weights, monkeypatch):
    monkeypatch.setenv("GZOO_INCEPTION_WEIGHTS", str(inception_weights))
    return {**os.environ, "GZOO_INCEPTION_WEIGHTS": str(inception_weights)}


# --- loss terms against independent computations ----------------------------------------------------------------

def test_ssim_matches_scikit_image_on_real_photos():
    from skimage.metrics import structural_similarity

    a, b = photo(64, "astronaut"), photo(64, "chelsea")
    ours = ssim_map(a, b)[0].permute(1, 2, 0).double().numpy()
    # OMGD's constants are (0.01)^2 and (0.03)^2 on [-1, 1] images: scikit-image's with data_range 1.
    _, theirs = structural_similarity(a[0].permute(1, 2, 0).double().numpy(), b[0].permute(1, 2, 0).double().numpy(),
                                      data_range=1.0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, channel_axis=2, full=True)
    inner = slice(5, -5)  # where the 11x11 window needs no padding (OMGD zero-pads, scikit-image reflects)
    np.testing.assert_allclose(ours[inner, inner], theirs[inner, inner], atol=1e-4)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)


def test_student_terms_equal_direct_computations(offline_inception):
    features = perceptual.perceptual_network("inception")
    settings = OmgdTrainingSettings()
    student = torch.cat([photo(64, "astronaut"), photo(64, "coffee")])
    wide, deep = torch.cat([photo(64, "chelsea"), photo(64, "rocket")]), student.flip(3)
    terms = student_terms(settings, features, student, [wide, deep])
    expected = {"G_ssim": 0.0, "G_style": 0.0, "G_feature": 0.0, "G_tv": 0.0}
    with torch.no_grad():
        s = features(student)
        array = student.double().numpy()
        tv = np.abs(np.diff(array, axis=3)).sum() + np.abs(np.diff(array, axis=2)).sum()
        for teacher in (wide, deep):
            t = features(teacher)
            expected["G_ssim"] += 10 * (1 - float(ssim_map(student, teacher).mean()))
            for a, b in zip(s, t, strict=True):
                c, h, w = a.shape[1:]
                gram_a = torch.einsum("nchw,ndhw->ncd", a, a) / (c * h * w)
                gram_b = torch.einsum("nchw,ndhw->ncd", b, b) / (c * h * w)
                expected["G_style"] += 1e4 * float((gram_a - gram_b).abs().mean())
            expected["G_feature"] += 10 * float((s[1] - t[1]).abs().mean())
            expected["G_tv"] += 1e-5 * tv
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-4), name
        assert value > 0
    # In a torchrun job each process's TV share is scaled so the average over processes is the global sum.
    doubled = student_terms(settings, features, student, [wide], world_size=2)
    assert float(doubled["G_tv"]) == pytest.approx(2 * 1e-5 * tv, rel=1e-4)


def test_the_student_side_computed_once_gives_the_per_teacher_terms(offline_inception):
    """student_terms computes the student's features, Gram matrices, SSIM statistics and total variation once for
    both teachers: every term is bit for bit what the computation per teacher (the code before) gives, and the
    gradient reaching the student's output is the same up to the order of its float sums."""
    features = perceptual.perceptual_network("inception")
    settings = OmgdTrainingSettings(lambda_style=100.0)
    student = torch.cat([photo(64, "astronaut"), photo(64, "coffee")]).requires_grad_(True)
    teachers = [torch.cat([photo(64, "chelsea"), photo(64, "rocket")]), student.detach().flip(3)]
    terms = student_terms(settings, features, student, teachers, world_size=2)
    reference = {name: student.new_zeros(()) for name in terms}
    student_features = features(student)
    for teacher in teachers:  # the terms as computed before, everything once per teacher
        with torch.no_grad():
            teacher_features = features(teacher)
        reference["G_ssim"] = reference["G_ssim"] + 10 * (1 - ssim(student, teacher))
        reference["G_style"] = reference["G_style"] + 100 * perceptual.gram_loss(student_features, teacher_features)
        reference["G_feature"] = reference["G_feature"] + 10 * torch.nn.functional.l1_loss(
            student_features[1], teacher_features[1])
        reference["G_tv"] = reference["G_tv"] + 1e-5 * 2 * perceptual.total_variation(student)
    for name, value in reference.items():
        assert torch.equal(terms[name], value), name
    ours, = torch.autograd.grad(sum(terms.values()), student)
    theirs, = torch.autograd.grad(sum(reference.values()), student)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    # SSIM with the first image's statistics computed before: the same map, bit for bit
    side = SsimSide(student)
    assert torch.equal(ssim_map(student, teachers[0], x_side=side), ssim_map(student, teachers[0]))
    with pytest.raises(ValueError, match="x_side"):
        ssim_map(teachers[0], teachers[1], x_side=side)


def test_channel_distillation_is_zero_for_identical_pooled_features():
    torch.manual_seed(0)
    connectors = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1, bias=False),
                                                         GlobalBatchNorm2d(16), torch.nn.ReLU())
                                     for _ in range(4))
    image = photo(32)
    student_features = [torch.nn.functional.avg_pool2d(image, 2).repeat(1, 3, 1, 1)[:, :8] for _ in range(4)]
    same = [c(s).mean((2, 3)).detach() for c, s in zip(connectors, student_features, strict=True)]
    with torch.no_grad():
        assert float(channel_distillation(student_features, same, connectors)) == 0.0
        shifted = [p + 0.5 for p in same]
        assert float(channel_distillation(student_features, shifted, connectors)) == pytest.approx(4 * 0.25,
                                                                                                   rel=1e-5)


# --- the discriminator and the taps ----------------------------------------------------------------------------

def test_the_shared_discriminator_shares_its_first_n_share_blocks():
    torch.manual_seed(0)
    x = torch.cat([photo(64), photo(64, "chelsea")], 1)
    assert SharedPatchGan(6, 8, 0, "instance")(x, 0).shape == (1, 1, 6, 6)  # 64 -> 32, 16, 8, 7, 6
    every = SharedPatchGan(6, 8, 5, "instance")
    assert torch.equal(every(x, 0), every(x, 1))
    three = SharedPatchGan(6, 8, 3, "instance")
    assert [len(copies) for copies in three.blocks] == [1, 1, 1, 2, 2]
    assert not torch.equal(three(x, 0), three(x, 1))
    three(x, 0).mean().backward()  # the first teacher's loss reaches the shared blocks and its own, never the other's
    assert three.blocks[0][0][0].weight.grad is not None and three.blocks[3][0][0].weight.grad is not None
    assert three.blocks[3][1][0].weight.grad is None
    # ndf 128 (the scripts'): one teacher's blocks hold the original MultiNLayerDiscriminator's parameters. Its
    # middle convs carry a bias under instance norm (no affine) and none under batch norm (which has one).
    widths = [(6, 128), (128, 256), (256, 512), (512, 1024), (1024, 1)]
    with_bias = sum(16 * i * o + o for i, o in widths)
    assert count_params(SharedPatchGan(6, 128, 5, "instance")) == with_bias
    middle = widths[1:4]
    assert count_params(SharedPatchGan(6, 128, 5, "batch")) == with_bias - sum(o for _, o in middle) \
        + sum(2 * o for _, o in middle)


def test_the_shared_blocks_run_once_for_both_teachers():
    """The real pair goes through the blocks the teachers share once (``shared``), then through each teacher's own
    blocks: the predictions are bit for bit the whole pass per teacher, the gradients the same up to float sums."""
    torch.manual_seed(0)
    real = torch.cat([photo(64), photo(64, "chelsea")], 1)
    discriminator = SharedPatchGan(6, 8, 3, "instance")
    trunk = discriminator.shared(real)
    once = [discriminator(trunk, index, discriminator.n_share) for index in (0, 1)]
    whole = [discriminator(real, index) for index in (0, 1)]
    for a, b in zip(once, whole, strict=True):
        assert torch.equal(a, b)
    parameters = list(discriminator.parameters())
    ours = torch.autograd.grad(sum(p.mean() for p in once), parameters)
    theirs = torch.autograd.grad(sum(p.mean() for p in whole), parameters)
    for a, b in zip(ours, theirs, strict=True):  # the biases before instance norms have gradients of float noise
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(SharedPatchGan(6, 8, 0, "instance").shared(real), real)  # nothing shared: nothing run


@pytest.mark.parametrize("family, arch, ngf, widths", [
    ("resnet", "mobile_resnet_generator", 16, [64, 64, 64, 64]),
    ("unet", "unet_generator", 16, [32, 128, 256, 64]),
])
def test_the_originals_mapping_layers_exist_with_their_widths(family, arch, ngf, widths):
    from gzoo.compress.engine import FeatureTaps

    model = create_model(arch, ngf=ngf).eval()
    taps = FeatureTaps(model, list(TAPS[family]))
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 256))
    assert [f.shape[1] for f in taps.features()] == widths


# --- recipes ----------------------------------------------------------------------------------------------------

# The scripts' settings: file, family, student ngf, wide ngf, deep ngf, ndf, n_share, n_dis, lambda_CD, batch,
# epochs, epochs_decay, direction.
PUBLISHED = [
    ("edges2shoes-unet", "unet", 16, 64, 16, 128, 5, 1, 10, 4, 100, 100, "AtoB"),
    ("edges2shoes-unet-s12", "unet", 12, 48, 12, 96, 5, 1, 10, 4, 100, 100, "AtoB"),
    ("edges2shoes-unet-s8", "unet", 8, 48, 12, 96, 5, 1, 10, 4, 100, 100, "AtoB"),
    ("edges2shoes-resnet", "resnet", 16, 64, 16, 128, 3, 1, 100, 4, 100, 100, "AtoB"),
    ("edges2shoes-resnet-s12", "resnet", 12, 48, 12, 96, 3, 1, 1000, 4, 100, 100, "AtoB"),
    ("edges2shoes-resnet-s8", "resnet", 8, 48, 12, 96, 3, 1, 1000, 4, 100, 100, "AtoB"),
    ("cityscapes-unet", "unet", 16, 64, 16, 128, 5, 3, 50, 4, 300, 450, "BtoA"),
    ("cityscapes-unet-s12", "unet", 12, 48, 12, 96, 5, 3, 50, 4, 300, 450, "BtoA"),
    ("cityscapes-unet-s8", "unet", 8, 48, 12, 96, 3, 3, 50, 4, 300, 450, "BtoA"),
    ("cityscapes-resnet", "resnet", 16, 64, 16, 128, 4, 3, 0, 1, 300, 450, "BtoA"),
    ("cityscapes-resnet-s12", "resnet", 12, 48, 12, 96, 3, 3, 0, 1, 300, 450, "BtoA"),
    ("cityscapes-resnet-s8", "resnet", 8, 48, 12, 96, 3, 3, 0, 1, 300, 450, "BtoA"),
]


@pytest.mark.parametrize("row", PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_recipe_has_the_scripts_settings(row):
    name, family, ngf, wide, deep, ndf, n_share, n_dis, cd, batch, epochs, decay, direction = row
    task = name.split("-")[0]
    recipe = load_recipe(RECIPES / "omgd" / f"{name}.yaml")
    assert (recipe.method, recipe.student.family, recipe.student.ngf) == ("omgd", family, ngf)
    assert (recipe.teachers.wide_ngf, recipe.teachers.deep_ngf, recipe.teachers.wide_from) == (wide, deep, None)
    training = recipe.training
    assert (training.ndf, training.n_share, training.n_dis, training.lambda_cd) == (ndf, n_share, n_dis, cd)
    assert (training.batch_size, training.seed, training.lr, training.beta1) == (batch, 233, 2e-4, 0.5)
    assert (training.gan_mode, training.lambda_gan, training.lambda_recon) == ("hinge", 1, 100)
    assert (training.lambda_ssim, training.lambda_style, training.lambda_feature, training.lambda_tv) == \
        (10, 1e4, 10, 1e-5)
    assert (training.perceptual, training.perceptual_normalization) == ("vgg16", "unit")
    assert (recipe.stages.distill.epochs, recipe.stages.distill.epochs_decay) == (epochs, decay)
    assert recipe.data.layout == "paired" and recipe.data.direction == direction
    assert recipe.evaluate.reference.startswith("real_stat/")
    # The student it exports is the zoo's omgd/* entry of the same name (the zoo lists no cityscapes S12/S8: those
    # take the teacher of the ngf-16 entry of their family).
    zoo = {m["id"]: m for m in yaml.safe_load((RECIPES.parent / "zoo.yaml").read_text())["models"]}
    entry = zoo.get(f"omgd/{name}") or zoo[f"omgd/{task}-{family}"] | {"arch_args": {"ngf": ngf}}
    assert recipe.teacher == entry["teacher"]
    exported = {"resnet": "mobile_resnet_generator", "unet": "unet_generator"}[family]
    assert entry["arch"] == exported
    assert count_params(create_model(exported, ngf=ngf, norm={"resnet": "instance", "unet": "batch"}[family])) == \
        count_params(create_model(entry["arch"], **{"norm": "batch" if family == "unet" else "instance",
                                                    **entry["arch_args"]}))


@pytest.mark.parametrize("name", [row[0] for row in PUBLISHED])
def test_the_pix2pix_recipes_export_the_student_scored_best_as_the_scripts_do(name):
    """--save_latest_freq (the scripts' 25000 on cityscapes, the default 20000 on edges2shoes) in steps of the same
    batch; FID against --real_stat_path on edges2shoes, DRN-D-105 mIoU on cityscapes (labels -> photo)."""
    best = load_recipe(RECIPES / "omgd" / f"{name}.yaml").best
    if name.startswith("edges2shoes"):
        assert (best.eval_every, best.metric, best.reference, best.max_images) == \
            (20000, "fid", "real_stat/edges2shoes-r_B.npz", 200)
    else:
        assert (best.eval_every, best.metric, best.labels, best.max_images) == \
            (25000, "miou", "database/cityscapes/train_labels", 500)
        assert best.segmenter is None  # evaluate.segmenter, the scripts' --drn_path


@pytest.mark.parametrize("overrides, message", [
    (["data.builtin=null", "data.root=x", "data.layout=unpaired"], "CycleGAN setting"),
    (["teachers.wide_from=no-such-dir"], "neither 'teacher'"),
    (["student.family=unet"], "multiple of 256, not 64"),
    (["training.n_share=6"], "between 0 and 5"),
    (["data.load_size=150"], "cache_frozen needs data.load_size equal to data.crop_size"),
    (["data.load_size=24", "data.crop_size=24"], "crop_size of at least 27"),
    (["training.perceptual=vgg19"], "must be one of vgg16, inception"),  # its terms index VGG16's four taps
])
def test_a_recipe_omgd_cannot_run_is_refused_in_one_line(overrides, message):
    from gzoo.errors import GzooError

    with pytest.raises(GzooError, match=message) as failure:
        load_recipe(DEMO, overrides)
    assert "\n" not in str(failure.value)


# --- runs on the pipeline ---------------------------------------------------------------------------------------

def _paired_dataset(root: Path, target: str) -> Path:
    """Photo crops beside a target made of them (A|B, pix2pix's layout): ``invert`` or ``gray``."""
    folder = root / "train"
    folder.mkdir(parents=True)
    for index, crop in enumerate(photo_crops(("astronaut", "chelsea", "coffee"), 64, 3)):
        other = 255 - crop if target == "invert" else np.repeat(crop.mean(2, keepdims=True), 3, 2).astype(np.uint8)
        Image.fromarray(np.concatenate([crop, other], 1)).save(folder / f"{index:03d}.png")
    return root


def _tiny_teacher(path: Path) -> Path:
    torch.manual_seed(3)
    model = create_model("mobile_resnet_generator", ngf=4, n_blocks=2)
    return save_model_dir(path, model.state_dict(), {"arch": "mobile_resnet_generator",
                                                     "arch_args": {"ngf": 4, "n_blocks": 2}})


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "distill" / "checkpoint.pt", weights_only=True)["modules"]


def test_the_student_never_sees_the_ground_truth_or_the_discriminator(tmp_path, offline_inception):
    """One step on the same inputs with every target changed: the student's update is the same, the teachers'
    and the discriminator's are not."""
    teacher = _tiny_teacher(tmp_path / "teacher")
    states = {}
    for target in ("invert", "gray"):
        data = _paired_dataset(tmp_path / target, target)
        recipe = load_recipe(DEMO, [*(s for s in TINY[1::2]), "data.builtin=null", f"data.root={data}",
                                    "data.layout=paired", "data.held_out_fraction=0.2", "stages.distill.steps=1",
                                    "stages.distill.steps_decay=0", "training.threads=1"], teacher=str(teacher))
        compress(recipe, tmp_path / f"run-{target}", lambda: teacher)
        states[target] = _checkpoint(tmp_path / f"run-{target}")
    invert, gray = states["invert"], states["gray"]
    for name in ("student", "connectors"):
        for key, value in invert[name].items():
            assert torch.equal(value, gray[name][key]), f"{name}.{key}"
    for name in ("teacher_wide", "teacher_deep", "discriminator"):
        assert any(not torch.equal(value, gray[name][key]) for key, value in invert[name].items()), name


def _run_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _whole_and_killed(tmp_path: Path, run_gzoo, gzoo_home: Path, offline_inception: dict, overrides: list[str],
                      before_resume=None) -> tuple[dict, dict, Path]:
    """The summaries of an 8-step run (6 + 2 decaying) uninterrupted and killed (SIGKILL) at its first checkpoint
    (step 2) then resumed, and the killed run's directory; ``before_resume`` looks at that directory first."""
    longer = [*TINY, "--set", "stages.distill.steps=6", "--set", "stages.distill.steps_decay=2",
              "--set", "training.threads=1", *overrides]
    whole = run_gzoo("compress", str(DEMO), "-o", str(tmp_path / "whole"), "--json", *longer)
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    env = {**offline_inception, "GZOO_HOME": str(gzoo_home)}
    kill_when([sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run), *longer], env,
              (run / "distill" / "checkpoint.pt").is_file, 240)
    assert not (run / "distill" / "done.json").exists()
    if before_resume:
        before_resume(run)
    resumed = run_gzoo("compress", str(DEMO), "-o", str(run), "--resume", "--json", *longer)
    assert resumed.returncode == 0, resumed.stderr
    return json.loads(whole.stdout), json.loads(resumed.stdout), run


def test_a_killed_run_resumes_to_the_same_student_and_numbers(tmp_path, run_gzoo, gzoo_home, offline_inception):
    one, two, run = _whole_and_killed(tmp_path, run_gzoo, gzoo_home, offline_inception, [])
    assert two["metrics"] == one["metrics"] and two["student_macs_paper"] == one["student_macs_paper"]
    for name, value in _checkpoint(tmp_path / "whole")["student"].items():
        assert torch.equal(value, _checkpoint(run)["student"][name]), name
    assert [r["step"] for r in _run_log(run)] == list(range(1, 9))


def test_vgg16_without_weights_offline_fails_at_once(tmp_path, gzoo_main, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    refuse_network(monkeypatch)
    run = tmp_path / "run"
    started = time.perf_counter()
    code, _, err = gzoo_main("compress", str(DEMO), "-o", str(run), "--set", "training.perceptual=vgg16")
    assert time.perf_counter() - started < 5
    assert code == 2 and err.strip().count("\n") == 0, err
    assert perceptual.VGG16_FILE in err and str(tmp_path / "torch" / "hub" / "checkpoints") in err
    assert "training.perceptual: inception" in err
    assert not run.exists()


def test_two_processes_give_the_first_step_losses_of_one(tmp_path, gzoo_home, offline_inception):
    """torchrun with 2 CPU processes (gloo), each on half of the global batch, logs the losses one process does:
    both teachers', the discriminator's and every term of the student's, channel distillation included."""
    tiny = [*TINY, "--set", "training.batch_size=4", "--set", "stages.distill.steps=1",
            "--set", "stages.distill.steps_decay=0", "--set", "training.threads=1"]
    env = {**offline_inception, "GZOO_HOME": str(gzoo_home)}
    single = alone_and_on_two(["compress", str(DEMO), *tiny], tmp_path / "one", tmp_path / "two", env)
    assert "student in " in single.stdout and "x fewer)" in single.stdout  # the printed table
    one, two = _run_log(tmp_path / "one")[0], _run_log(tmp_path / "two")[0]
    terms = ("D", "G_gan_wide", "G_recon_wide", "G_gan_deep", "G_recon_deep", "G_ssim", "G_style", "G_feature",
             "G_tv", "G_cd")
    for term in terms:
        assert two[term] == pytest.approx(one[term], rel=1e-5), term


def test_a_frozen_pretrained_wide_teacher_teaches_the_student(tmp_path, run_gzoo, offline_inception):
    """vintagify itself as the wide teacher, beside a deep teacher trained online: vintagify is not trained (not in
    the checkpoint), and the student gets closer to it: held-out PSNR against vintagify after 40 steps well above
    after 1."""
    scores = {}
    for steps in (1, 40):
        result = run_gzoo("compress", str(FROZEN_DEMO), "-o", str(tmp_path / f"run{steps}"), "--json", *TINY,
                          "--set", f"stages.distill.steps={steps}", "--set", "stages.distill.steps_decay=0",
                          "--set", "training.checkpoint_every=50", "--set", "training.threads=1",
                          "--set", "training.lr=2e-3")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        scores[steps] = summary["metrics"]["psnr"]
    modules = _checkpoint(tmp_path / "run40")
    assert "teacher_wide" not in modules and {"teacher_deep", "discriminator", "student", "connectors"} <= set(modules)
    assert summary["teachers"]["wide"] == {"from": "community/vintagify-cyclegan", "frozen": True}
    assert scores[40] > scores[1] + 1, scores  # measured: 10.3 -> 12.3 dB


# --- the best-scored student (a best section) -------------------------------------------------------------------

# The tiny demo scored by PSNR against its teacher after each of 3 steps at a high learning rate: the student's
# held-out PSNR falls after the first update and is not back by the last (measured: 13.1, 10.9, 12.3 dB).
SCORED = ["best.eval_every=1", "best.metric=psnr", "stages.distill.steps=3", "stages.distill.steps_decay=0",
          "training.lr=1.0e-2", "training.threads=1"]


def _tiny_run(tmp_path: Path, name: str, teacher: Path, overrides: list[str]) -> dict:
    recipe = load_recipe(DEMO, [*TINY[1::2], *overrides], teacher=str(teacher))
    return compress(recipe, tmp_path / name, lambda: teacher)


def _held_out_psnr(model: torch.nn.Module, teacher: torch.nn.Module, folder: Path) -> float:
    """Mean PSNR (dB, [-1, 1] images) of ``model`` against ``teacher`` on the PNG crops of ``folder``, in numpy."""
    images = [np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1
              for path in sorted(folder.glob("*.png"))]
    inputs = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    with torch.no_grad():
        ours = model.eval()(inputs).clamp(-1, 1).double().numpy()
        theirs = teacher.eval()(inputs).clamp(-1, 1).double().numpy()
    mse = ((ours - theirs) ** 2).reshape(len(images), -1).mean(1)
    return float(np.mean(10 * np.log10(4 / mse)))


def test_the_exported_student_is_the_best_scored_one(tmp_path, offline_inception):
    """Real held-out PSNR scores after every step: the exported student is the best scored, not the last. Its PSNR
    recomputed in numpy from the exported model directory is the recorded best (and gzoo eval's number), the last
    student's is the recorded last score, and they differ; done.json, the summary and the lineage agree."""
    teacher = _tiny_teacher(tmp_path / "teacher")
    summary = _tiny_run(tmp_path, "run", teacher, SCORED)
    run = tmp_path / "run"
    done = json.loads((run / "distill" / "done.json").read_text())
    config = json.loads((Path(summary["student"]) / "config.json").read_text())
    scored = done["student_score"]
    assert summary["student_score"] == config["lineage"]["student_score"] == scored
    assert {key: scored[key] for key in ("metric", "held_out_images", "after_student_steps", "exported")} == \
        {"metric": "psnr", "held_out_images": 8, "after_student_steps": [1, 2, 3], "exported": "best"}
    scores = scored["scores"]
    assert scored["best"] == max(scores) and scored["best_after_student_steps"] == 1 + scores.index(max(scores))
    assert scored["best_after_student_steps"] != 3, scores  # the best is not the last (measured 13.1, 10.9, 12.3)
    logged = [(r["step"], r["psnr_student"]) for r in _run_log(run) if "psnr_student" in r]
    assert logged == [(s, pytest.approx(v, rel=1e-6)) for s, v in zip([1, 2, 3], scores, strict=True)]
    reference = load_model_dir(teacher)
    exported = load_model_dir(Path(summary["student"]))
    assert _held_out_psnr(exported, reference, run / "held_out") == pytest.approx(scored["best"], rel=1e-6)
    assert summary["metrics"]["psnr"] == pytest.approx(scored["best"], rel=1e-6)  # gzoo eval of the export
    modules = _checkpoint(run)
    for key, value in exported.state_dict().items():
        assert torch.equal(value, modules["student_best"][key]), key
    last = create_model("mobile_resnet_generator", ngf=4, norm="instance")
    last.load_state_dict(modules["student"])
    assert _held_out_psnr(last, reference, run / "held_out") == pytest.approx(scores[-1], rel=1e-6)
    assert abs(scores[-1] - scored["best"]) > 0.1


def test_without_a_best_section_the_last_student_is_exported_and_scoring_changes_no_step(tmp_path,
                                                                                       offline_inception):
    """The same run with and without a best section: without it, the checkpoint, done.json, summary and lineage
    hold no score and the export is the last student; with it, the training (every weight it ends with) is the
    same bit for bit, scoring only adds the best weights and the scores."""
    teacher = _tiny_teacher(tmp_path / "teacher")
    plain = _tiny_run(tmp_path, "plain", teacher, SCORED[2:])
    _tiny_run(tmp_path, "scored", teacher, SCORED)
    unscored, scored = _checkpoint(tmp_path / "plain"), _checkpoint(tmp_path / "scored")
    assert set(scored) - set(unscored) == {"student_best", "student_score"}
    for name, module in unscored.items():
        for key, value in module.items():
            assert torch.equal(value, scored[name][key]), f"{name}.{key}"
    done = json.loads((tmp_path / "plain" / "distill" / "done.json").read_text())
    config = json.loads((Path(plain["student"]) / "config.json").read_text())
    assert "student_score" not in done and "student_score" not in plain
    assert "student_score" not in config["lineage"]
    exported = load_model_dir(Path(plain["student"])).state_dict()
    for key, value in unscored["student"].items():
        assert torch.equal(exported[key], value), key
    assert not any("psnr_student" in r for r in _run_log(tmp_path / "plain"))


class ScriptedScores:
    """Stands in for HeldOutScorer: returns the given scores in turn and keeps the weights it scored."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.scored, self.made = scores, [], []

    def scorer(self, metric: str, *args, **kwargs):
        self.made.append((metric, kwargs))
        return self.score

    def score(self, model: torch.nn.Module) -> float:
        self.scored.append({k: v.clone() for k, v in model.state_dict().items()})
        return self.scores[len(self.scored) - 1]


@pytest.mark.parametrize("scores, best", [([-12.0, -15.0, -13.0], 1), ([float("nan")] * 3, None)],
                         ids=["middle", "no-number"])
def test_the_student_is_scored_every_eval_every_steps_and_after_the_last(tmp_path, monkeypatch, offline_inception,
                                                                         scores, best):
    """5 steps, eval_every 2: scored after steps 2, 4 and 5; the weights scored best are exported, or the last
    student when no score is a number."""
    from gzoo.compress import omgd

    scripted = ScriptedScores(scores)
    monkeypatch.setattr(omgd, "HeldOutScorer", scripted.scorer)
    teacher = _tiny_teacher(tmp_path / "teacher")
    summary = _tiny_run(tmp_path, "run", teacher, ["best.eval_every=2", "best.metric=psnr", "training.threads=1",
                                                   "stages.distill.steps=3", "stages.distill.steps_decay=2"])
    assert len(scripted.made) == 1 and scripted.made[0][0] == "psnr" and len(scripted.scored) == 3
    assert scripted.made[0][1]["teacher"] is not None  # PSNR against the recipe's teacher
    scored = summary["student_score"]
    assert scored["after_student_steps"] == [2, 4, 5]
    modules = _checkpoint(tmp_path / "run")
    exported = load_model_dir(Path(summary["student"])).state_dict()
    if best is None:
        assert scored["exported"] == "last" and scored["best_after_student_steps"] is None
        expected = modules["student"]
    else:
        assert scored["scores"] == [-s for s in scores] and scored["best"] == 15.0  # PSNR in dB, higher is better
        assert scored["exported"] == "best" and scored["best_after_student_steps"] == 4
        expected = scripted.scored[best]
        assert any(not torch.equal(v, modules["student"][k]) for k, v in expected.items())  # not the last
    for key, value in expected.items():
        assert torch.equal(exported[key], value), key
    assert [r["step"] for r in _run_log(tmp_path / "run") if "psnr_student" in r] == [2, 4, 5]


@pytest.mark.parametrize("overrides, message", [
    (["best.eval_every=0"], "'best.eval_every' must be at least 1"),
    (["best.eval_every=2", "best.metric=lpips"], "'best.metric' must be one of fid, miou, psnr, not 'lpips'"),
    (["best.metric=psnr"], "'best.eval_every' is required"),
    (["best.eval_every=2"], "best.metric fid needs best.reference"),
    (["best.eval_every=2", "best.metric=miou"], "best.metric miou needs best.segmenter and best.labels"),
    (["best.eval_every=2", "best.max_images=1", "best.reference=real"], "'best.max_images' must be at least 2"),
    (["best.eval_every=2", "best.reference=no-such.npz"], "no-such.npz: no such file"),
])
def test_a_bad_best_section_is_refused_in_one_line_before_anything_runs(tmp_path, gzoo_main, offline_inception,
                                                                       overrides, message):
    run = tmp_path / "run"
    code, _, err = gzoo_main("compress", str(DEMO), "-o", str(run), "--teacher", str(_tiny_teacher(tmp_path / "t")),
                             *(arg for o in overrides for arg in ("--set", o)))
    assert code == 2 and err.strip().count("\n") == 0, err
    assert message in err
    assert not run.exists()


def test_best_by_miou_segments_by_the_evaluate_sections_segmenter_and_label_maps(tmp_path, monkeypatch,
                                                                                 offline_inception):
    """Paired data scored by mIoU, with test_miou's colour rule standing in for DRN-D-105 (the segmenter file is not
    read) against label maps the rule makes of the held-out targets; the segmenter and labels are the evaluate
    section's. The mIoU is recorded in %, the best is the highest, and the exported student's, recomputed from its
    model directory (numpy quantisation, independent IoU), is it."""
    from test_miou import colour_classes, colour_segmenter, independent_miou

    import gzoo.evaluation

    data = _paired_dataset(tmp_path / "data", "invert")
    held_out = [data / "train" / "000.png", data / "train" / "005.png"]  # every 5th of 9 pairs
    halves = [np.asarray(Image.open(path).convert("RGB")) for path in held_out]
    labels = tmp_path / "labels"
    labels.mkdir()
    for path, pair in zip(held_out, halves, strict=True):
        target = torch.from_numpy(pair[:, 64:].copy()).permute(2, 0, 1)[None]
        Image.fromarray(colour_classes(target)[0].numpy().astype(np.uint8)).save(labels / path.name)
    segmenter = tmp_path / "drn.pth"
    segmenter.write_bytes(b"")
    monkeypatch.setattr(gzoo.evaluation, "load_segmenter", lambda path: colour_segmenter)
    teacher = _tiny_teacher(tmp_path / "teacher")
    recipe = load_recipe(DEMO, [*TINY[1::2], "data.builtin=null", f"data.root={data}", "data.layout=paired",
                                "data.held_out_fraction=0.2", "best.eval_every=1", "best.metric=miou",
                                f"evaluate.segmenter={segmenter}", f"evaluate.labels={labels}",
                                "training.lr=1.0e-2", "training.threads=1"], teacher=str(teacher))
    summary = compress(recipe, tmp_path / "run", lambda: teacher)
    scored = summary["student_score"]
    assert (scored["metric"], scored["held_out_images"], scored["after_student_steps"]) == ("miou", 2, [1, 2, 3, 4])
    assert all(0 < s <= 100 for s in scored["scores"]) and scored["best"] == max(scored["scores"])
    inputs = torch.from_numpy(np.stack([pair[:, :64] for pair in halves]).astype(np.float32) / 127.5 - 1)
    with torch.no_grad():
        outputs = load_model_dir(Path(summary["student"])).eval()(inputs.permute(0, 3, 1, 2)).numpy()
    images = ((np.clip(outputs, -1, 1) + 1) / 2 * 255).astype(np.uint8)
    targets = np.stack([np.asarray(Image.open(labels / path.name)) for path in held_out])
    predicted = colour_classes(torch.from_numpy(images)).numpy()
    assert independent_miou(predicted, targets, 19) == pytest.approx(scored["best"], rel=1e-9)


def test_best_by_psnr_or_mious_missing_label_maps_on_paired_data_are_refused_before_the_run(tmp_path,
                                                                                           offline_inception):
    """PSNR against the teacher only where the teacher is the ground truth; mIoU needs a label map for every
    held-out input, checked before the run directory is made; the CycleGAN setting scores its student itself."""
    from gzoo.errors import GzooError

    with pytest.raises(GzooError, match="the 'best' section is for OMGD's pix2pix setting"):
        load_recipe(RECIPES / "omgd" / "horse2zebra-resnet.yaml", ["best.eval_every=2"])
    data = _paired_dataset(tmp_path / "data", "invert")
    paired = [*TINY[1::2], "data.builtin=null", f"data.root={data}", "data.layout=paired",
              "data.held_out_fraction=0.2", "best.eval_every=2"]
    with pytest.raises(GzooError, match="psnr compares the student with the recipe's teacher") as failure:
        load_recipe(DEMO, [*paired, "best.metric=psnr"])
    assert "\n" not in str(failure.value)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "000.png").write_bytes(b"")  # the first held-out input's map only
    segmenter = tmp_path / "drn.pth"
    segmenter.write_bytes(b"")
    recipe = load_recipe(DEMO, [*paired, "best.metric=miou", f"best.segmenter={segmenter}", f"best.labels={labels}"])
    teacher = _tiny_teacher(tmp_path / "teacher")
    with pytest.raises(GzooError) as failure:
        compress(recipe, tmp_path / "run", lambda: teacher)
    assert f"{labels}: no label map 005.png for the held-out input 005.png (1 of 2 missing)" in str(failure.value)
    assert "\n" not in str(failure.value) and not (tmp_path / "run").exists()


def test_a_killed_scored_run_resumes_to_the_same_best_student_and_scores(tmp_path, run_gzoo, gzoo_home,
                                                                        offline_inception):
    """Real FIDs of the student on the held-out crops against other photos' crops, after steps 2, 4, 6 and 8;
    killed (SIGKILL) at its first checkpoint (step 2, after the first score) and resumed, the run ends with the
    uninterrupted run's weights (the best student's included), scores, exported student and metrics."""
    reference = tmp_path / "reference"
    write_images(reference, photo_crops(("rocket", "retina", "immunohistochemistry"), 64, 2))

    def first_score_kept(run: Path) -> None:
        kept = _checkpoint(run)["student_score"]["scores"]  # the first score is in the checkpoint, the last is not
        assert kept[0] > 0 and kept[-1].isnan()

    one, two, run = _whole_and_killed(tmp_path, run_gzoo, gzoo_home, offline_inception,
                                      ["--set", "training.lr=1.0e-2", "--set", "best.eval_every=2",
                                       "--set", f"best.reference={reference}"], first_score_kept)
    assert two["metrics"] == one["metrics"] and two["student_score"] == one["student_score"]
    done = json.loads((run / "distill" / "done.json").read_text())
    assert done == json.loads((tmp_path / "whole" / "distill" / "done.json").read_text())
    scored = done["student_score"]
    assert scored["metric"] == "fid" and scored["after_student_steps"] == [2, 4, 6, 8]
    assert all(s > 0 for s in scored["scores"]) and scored["best"] == min(scored["scores"])
    # Which student scores best depends on the machine's float sums (measured: after 2 steps of 8 on one, after 4
    # on another); the first score, taken before the kill, reaches the resumed run only through the checkpoint.
    best = scored["after_student_steps"][scored["scores"].index(scored["best"])]
    assert scored["best_after_student_steps"] == best
    final, again = _checkpoint(tmp_path / "whole"), _checkpoint(run)
    for name, module in final.items():
        for key, value in module.items():
            assert torch.equal(value, again[name][key]), f"{name}.{key}"
    if best != 8:  # then the exported student is not the last one
        assert any(not torch.equal(v, final["student"][k]) for k, v in final["student_best"].items())
    for directory in (tmp_path / "whole" / "student", run / "student"):
        exported = load_model_dir(directory).state_dict()
        for key, value in final["student_best"].items():
            assert torch.equal(exported[key], value), key
    assert [r["step"] for r in _run_log(run)] == list(range(1, 9))
