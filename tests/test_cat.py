"""CAT: one-step pruning to a MACs target, kernel alignment, refusals before training, and short runs (pix2pix
teacher on vintagify's outputs, CycleGAN teacher on unpaired photos) that learn and resume to the same weights."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml
from processes import kill_when
from torch import nn

from gzoo.compress.cat import (
    TAPS,
    ImagePool,
    check_spade_target,
    check_target,
    kept_channels,
    macs_paper,
    norm_scales,
    prune_spade_to_target,
    prune_to_target,
    pruned_spade_student,
    pruned_student,
    smallest_widths,
    spade_macs_paper,
    spade_norm_scales,
)
from gzoo.compress.losses import kernel_alignment
from gzoo.compress.pipeline import compress
from gzoo.compress.recipe import load_recipe
from gzoo.data.modeldir import read_config, save_model_dir
from gzoo.errors import GzooError, Interrupted
from gzoo.metrics import count_macs
from gzoo.models import load_model_dir
from gzoo.models.cat import (
    BlockWidths,
    CatSpadeWidths,
    CatWidths,
    cat_inception_generator,
    cat_inception_spade_generator,
)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "recipes" / "demo" / "vintagify_cat.yaml"


def spread_teacher(ngf: int = 64, norm: str = "instance_affine", seed: int = 0, n_blocks: int = 9) -> nn.Module:
    """An inception teacher whose norm scales are spread and signed, as a trained one's are (a fresh one's are
    all 1: every threshold would keep all or nothing)."""
    torch.manual_seed(seed)
    model = cat_inception_generator(ngf=ngf, norm=norm, n_blocks=n_blocks)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.InstanceNorm2d | nn.BatchNorm2d) and module.weight is not None:
                module.weight.uniform_(-1.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _meta_macs(widths: CatWidths, height: int, width: int, norm: str) -> int:
    with torch.device("meta"):
        model = cat_inception_generator(widths=widths.to_dict(), n_blocks=len(widths.blocks), norm=norm)
        return count_macs(model, torch.zeros(1, 3, height, width)).macs_paper


IRREGULAR = CatWidths(13, (21, 40), (
    BlockWidths((0, 0, 0), (0, 0, 0)),  # a block with no branch
    BlockWidths((5, 0, 17), (0, 9, 1)),
    BlockWidths((0, 3, 0), (0, 0, 0)),
), (19, 16))


@pytest.mark.parametrize("norm", ["instance_affine", "batch"])
@pytest.mark.parametrize(("height", "width"), [(64, 64), (60, 44)])
def test_macs_from_widths_equal_the_counters(norm, height, width):
    for widths in (CatWidths.uniform(16), CatWidths.uniform(24, 4), IRREGULAR):
        assert macs_paper(widths, height, width, norm) == _meta_macs(widths, height, width, norm)
    assert macs_paper(CatWidths.uniform(64), 256, 256, "instance_affine") == 43_527_405_568  # REFERENCE.md


@pytest.fixture(scope="module")
def teacher64() -> nn.Module:
    return spread_teacher(64)


@pytest.mark.parametrize("fraction", [0.05, 0.10, 0.30])
def test_pruning_meets_its_target_and_keeps_prune_cin_lb(teacher64, fraction):
    teacher_macs = macs_paper(teacher64.widths, 256, 256, "instance_affine")
    target = fraction * teacher_macs
    pruned = prune_to_target(teacher64, target, (256, 256), cin_lb=16)
    assert pruned.teacher_macs_paper == teacher_macs
    assert 0.99 * target <= pruned.macs_paper <= target, pruned.macs_paper / target
    assert _meta_macs(pruned.widths, 256, 256, "instance_affine") == pruned.macs_paper
    widths = pruned.widths
    assert min(widths.stem, *widths.down, *widths.up) >= 16
    assert widths.down[-1] < teacher64.widths.down[-1]  # the trunk is pruned too
    # Every width is the count of scales above the threshold (the floor of 16 aside).
    scales = norm_scales(teacher64)
    above = [int((s > pruned.threshold).sum()) for s in scales.blocks[4]]
    assert [*widths.blocks[4].res, *widths.blocks[4].dw] == above
    assert widths.stem == max(16, int((scales.down[0] > pruned.threshold).sum()))


def test_pruning_is_deterministic_and_its_config_saves_reloads_and_counts_the_same(tmp_path, teacher64):
    target = 0.1 * macs_paper(teacher64.widths, 256, 256, "instance_affine")
    first = prune_to_target(teacher64, target, (256, 256))
    again = prune_to_target(spread_teacher(64), target, (256, 256))  # the same weights, built anew
    assert again == first
    student = pruned_student(teacher64, first.threshold, 16, keep_teacher_weights=False, norm="instance_affine")
    assert student.widths == first.widths
    arch_args = {"widths": student.width_config(), "n_blocks": 9, "norm": "instance_affine"}
    directory = save_model_dir(tmp_path / "student", student.state_dict(),
                               {"arch": "cat_inception_generator", "arch_args": json.loads(json.dumps(arch_args))})
    reloaded = load_model_dir(directory)
    assert reloaded.widths == first.widths and read_config(directory)["arch_args"]["widths"] == first.widths.to_dict()
    assert count_macs(reloaded.to("meta"), torch.zeros(1, 3, 256, 256, device="meta")).macs_paper == first.macs_paper


def test_the_smallest_target_leaves_prune_cin_lb_channels_and_no_branch(teacher64):
    smallest = macs_paper(smallest_widths(teacher64.widths, 16), 256, 256, "instance_affine")
    pruned = prune_to_target(teacher64, smallest, (256, 256), cin_lb=16)
    assert pruned.widths == smallest_widths(teacher64.widths, 16)
    student = pruned_student(teacher64, pruned.threshold, 16, False, "instance_affine")
    assert all(len(block.res_ops) == len(block.dw_ops) == 0 for block in student.features)
    assert student(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)  # blocks with no branch pass their input on


@pytest.mark.parametrize(("target", "cin_lb", "message"), [
    (1e6, 16, "is below 5.469e+08, the fewest MACs prune_cin_lb 16 allows at 256x256"),
    (5e10, 16, "is not below the teacher's 4.353e+10 MACs"),
    (1e9, 80, "prune_cin_lb 80 is more than the teacher's narrowest down/up layer (64 channels)"),
])
def test_an_impossible_target_is_one_line(target, cin_lb, message):
    with pytest.raises(GzooError) as error:
        check_target(CatWidths.uniform(64), "instance_affine", target, (256, 256), cin_lb)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_student_starts_from_the_surviving_weights_then_the_originals_initialisation():
    teacher = spread_teacher(16, seed=3)
    x = torch.randn(2, 3, 32, 32)
    whole = pruned_student(teacher, -1.0, 8, keep_teacher_weights=True, norm="instance_affine")
    torch.testing.assert_close(whole(x), teacher(x), rtol=0, atol=0)  # nothing below the threshold: the teacher
    pruned = prune_to_target(teacher, 0.3 * macs_paper(teacher.widths, 32, 32, "instance_affine"), (32, 32), 8)
    kept = kept_channels(norm_scales(teacher), pruned.threshold, 8)
    trunk, stem = kept.down[2], kept.down[0]
    kept_weights = pruned_student(teacher, pruned.threshold, 8, True, "instance_affine")
    torch.testing.assert_close(kept_weights.down_sampling[4].weight, teacher.down_sampling[4].weight[kept.down[1]][
        :, stem])
    torch.testing.assert_close(kept_weights.up_sampling[0].weight, teacher.up_sampling[0].weight[trunk][:, kept.up[0]])
    block = next(i for i, b in enumerate(kept.blocks) if len(b[4]))  # one with a depthwise 3x3 branch
    old = teacher.features[block].dw_ops[sum(1 for c in teacher.widths.blocks[block].dw[:1] if c)]
    new = kept_weights.features[block].dw_ops[sum(1 for c in kept.blocks[block][3:4] if len(c))]
    torch.testing.assert_close(new[0][0].weight, old[0][0].weight[kept.blocks[block][4]][:, trunk])
    torch.testing.assert_close(new[2][0].weight, old[2][0].weight[kept.blocks[block][4]])
    torch.testing.assert_close(new[4].weight, old[4].weight[trunk][:, kept.blocks[block][4]])
    # The original's start: convs drawn anew, instance-norm scales the teacher's, block output norms fresh.
    torch.manual_seed(0)
    fresh = pruned_student(teacher, pruned.threshold, 8, False, "instance_affine")
    assert 0.015 < float(fresh.down_sampling[4].weight.detach().std()) < 0.025
    assert not torch.equal(fresh.down_sampling[4].weight, kept_weights.down_sampling[4].weight)
    torch.testing.assert_close(fresh.down_sampling[5].weight, teacher.down_sampling[5].weight[kept.down[1]])
    assert all(torch.equal(b.pw_bn.weight, torch.ones_like(b.pw_bn.weight)) for b in fresh.features)


def test_kernel_alignment_has_its_properties():
    torch.manual_seed(0)
    x, y = torch.randn(5, 8, 4, 4), torch.randn(5, 3, 6, 6)
    assert float(kernel_alignment(x, x)) == pytest.approx(1, abs=1e-6)
    value = float(kernel_alignment(x, y))
    assert 0 < value < 1
    assert float(kernel_alignment(3.5 * x, y)) == pytest.approx(value, rel=1e-5)
    assert float(kernel_alignment(x, 0.01 * y)) == pytest.approx(value, rel=1e-5)
    assert float(kernel_alignment(y, x)) == pytest.approx(value, rel=1e-6)
    X, Y = x.double().flatten(1), y.double().flatten(1)  # ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
    direct = torch.linalg.matrix_norm(Y.T @ X) ** 2 / (torch.linalg.matrix_norm(X.T @ X)
                                                       * torch.linalg.matrix_norm(Y.T @ Y))
    assert float(kernel_alignment(x, y)) == pytest.approx(float(direct), rel=1e-5)
    assert float(kernel_alignment(x[:1], y[:1])) == pytest.approx(1)  # one sample: nothing to align


def test_the_image_pool_returns_stored_images_once_full():
    import random

    pool = ImagePool(2, (1, 1, 1))
    images = [torch.full((1, 1, 1, 1), float(i)) for i in range(6)]
    shown = [float(pool.query(image, random.Random(i))) for i, image in enumerate(images)]
    assert shown[:2] == [0, 1] and pool.count == 2
    assert any(s < i for i, s in enumerate(shown[2:], start=2))  # some older image came back
    assert sorted(pool.images.flatten().tolist())[-1] <= 5 and set(pool.state_dict()) == {"images", "count"}


# --- recipes ----------------------------------------------------------------------------------------------------

PUBLISHED = [  # snap-research/CAT scripts: file, target, lambda_distill, lambda_recon, gan_mode, ndf, norm, batch
    ("horse2zebra", 2.6e9, 1.0, 5.0, "lsgan", 64, "instance_affine", 80, 32),
    ("cityscapes", 5.6e9, 0.5, 100.0, "hinge", 128, "batch", 80, 32),
    ("map2sat", 4.6e9, 1.3, 100.0, "hinge", 128, "batch", 80, 32),
]


@pytest.mark.parametrize(("name", "target", "distill", "recon", "gan_mode", "ndf", "norm", "batch", "teacher_batch"),
                         PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_the_cat_recipes_carry_the_scripts_settings(name, target, distill, recon, gan_mode, ndf, norm, batch,
                                                    teacher_batch):
    recipe = load_recipe(ROOT / "recipes" / "cat" / f"{name}.yaml")
    stages = recipe.stages
    assert recipe.method == "cat" and stages.prune.target_macs == target and stages.prune.prune_cin_lb == 16
    assert recipe.training.lambda_distill == distill and recipe.training.lambda_recon == recon
    assert (recipe.training.gan_mode, recipe.training.ndf, recipe.training.batch_size) == (gan_mode, ndf, batch)
    assert (stages.teacher.ngf, stages.teacher.norm, stages.teacher.batch_size) == (64, norm, teacher_batch)
    assert not stages.prune.keep_teacher_weights


def test_the_demo_target_is_10x_below_vintagify():
    recipe = load_recipe(DEMO)
    size = recipe.data.crop_size
    vintagify = 3_551_985_664  # paper-convention MACs of the ResNet-9 at 64x64 (a quarter of 14.2G at 128)
    assert vintagify / recipe.stages.prune.target_macs >= 10
    teacher = CatWidths.uniform(recipe.stages.teacher.ngf)
    assert check_target(teacher, "instance_affine", recipe.stages.prune.target_macs, (size, size), 16) > \
        recipe.stages.prune.target_macs


@pytest.mark.parametrize(("override", "message"), [
    ("stages.prune.target_macs=1.0e+6", "stages.prune.target_macs 1e+06 is below 3.418e+07, the fewest MACs "
                                        "prune_cin_lb 16 allows at 64x64"),
    ("stages.prune.target_macs=1.0e+10", "is not below the teacher's 1.799e+08 MACs at 64x64"),
    ("stages.prune.prune_cin_lb=20", "prune_cin_lb 20 is more than the teacher's narrowest down/up layer (16"),
    ("stages.teacher.norm=instance", "'stages.teacher.norm' must be one of instance_affine, batch"),
    ("stages.distill=null", "cat needs a 'stages.distill' section"),
])
def test_a_target_cat_cannot_reach_fails_when_the_recipe_loads(override, message):
    with pytest.raises(GzooError) as error:
        load_recipe(DEMO, [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_gzoo_compress_refuses_it_in_one_line_before_anything(tmp_path, run_gzoo):
    run = tmp_path / "run"
    result = run_gzoo("compress", str(DEMO), "-o", str(run), "--set=stages.prune.target_macs=1.0e+6")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "is below 3.418e+07" in result.stderr
    assert not run.exists()


@pytest.fixture
def tiny_cat_teacher(tmp_path) -> Path:
    model = spread_teacher(8, seed=1)
    return save_model_dir(tmp_path / "cat-teacher", model.state_dict(), {
        "arch": "cat_inception_generator", "arch_args": {"ngf": 8, "norm": "instance_affine"}})


def _without_teacher_stage(tmp_path: Path, teacher: Path, **prune) -> Path:
    document = yaml.safe_load(DEMO.read_text())
    document["teacher"] = str(teacher)
    del document["stages"]["teacher"]
    document["stages"]["prune"] |= prune
    document["data"] |= {"load_size": 32, "crop_size": 32, "crops_per_photo": 2, "held_out_crops_per_photo": 1}
    document["training"] |= {"cache_targets": False, "batch_size": 2, "ndf": 8, "threads": 1}
    document["stages"]["distill"] = {"steps": 4, "steps_decay": 0}
    document["evaluate"] = {"metrics": ["psnr"]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(("prune", "message"), [
    ({"target_macs": 1.0e+9, "prune_cin_lb": 4}, "is not below the teacher's"),
    ({"target_macs": 1.0e+5, "prune_cin_lb": 4}, "is below"),
    ({"target_macs": 1.0e+7, "prune_cin_lb": 16}, "prune_cin_lb 16 is more than the teacher's narrowest"),
])
def test_a_given_teacher_is_checked_before_any_training(tmp_path, tiny_cat_teacher, prune, message):
    run = tmp_path / "run"
    recipe = load_recipe(_without_teacher_stage(tmp_path, tiny_cat_teacher, **prune))
    with pytest.raises(GzooError) as error:
        compress(recipe, run, lambda: tiny_cat_teacher)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (run / "distill").exists()


def test_without_a_teacher_stage_the_teacher_must_be_an_inception_one(tmp_path, run_gzoo, gzoo_home):
    result = run_gzoo("compress", str(_without_teacher_stage(tmp_path, Path("community/vintagify-cyclegan"))),
                      "-o", str(tmp_path / "run"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "is a resnet_generator; a cat recipe without stages.teacher prunes a trained cat_inception_generator" in \
        result.stderr
    assert not (tmp_path / "run" / "distill").exists()


# --- short runs -------------------------------------------------------------------------------------------------

TINY = ["data.load_size=32", "data.crop_size=32", "data.crops_per_photo=4", "data.held_out_crops_per_photo=1",
        "training.batch_size=2", "training.ndf=8", "training.checkpoint_every=5", "training.log_every=1",
        "training.lr=2e-3", "stages.teacher.ngf=8", "stages.prune.prune_cin_lb=4", "stages.prune.target_macs=5.0e+6",
        "evaluate.metrics=[psnr]", "training.threads=1"]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _stop_at(stage: str, step: int):
    def progress(at: str, done: int, total: int, losses: dict) -> None:
        if at == stage and done == step:
            raise KeyboardInterrupt  # as Ctrl-C, between two checkpoints
    return progress


def _student(run: Path) -> dict[str, torch.Tensor]:
    return load_model_dir(run / "student").state_dict()


def test_kernel_alignment_distillation_teaches_the_pruned_student():
    """The distill stage's term alone, -sum of KA at the 4 taps, through the taps on teacher and student: 40
    Adam steps on real photos close most of the re-initialised student's gap to full alignment. A sign error, a
    wrong tap or features that do not reach the loss fail this."""
    from photos import photo

    from gzoo.compress.engine import FeatureTaps

    teacher = spread_teacher(16, seed=2)
    pruned = prune_to_target(teacher, 0.3 * macs_paper(teacher.widths, 32, 32, "instance_affine"), (32, 32), 8)
    torch.manual_seed(0)
    student = pruned_student(teacher, pruned.threshold, 8, False, "instance_affine")
    names = ("astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry")
    inputs = torch.cat([photo(32, name) for name in names])
    teacher_taps, student_taps = FeatureTaps(teacher, TAPS), FeatureTaps(student, TAPS)
    with torch.no_grad():
        teacher(inputs)
    targets = teacher_taps.features()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3, betas=(0.5, 0.999))

    def alignment() -> torch.Tensor:
        student(inputs)
        return sum(kernel_alignment(s, t) for s, t in zip(student_taps.features(), targets, strict=True))

    before = float(alignment().detach())
    for _ in range(40):
        optimizer.zero_grad()
        (-alignment()).backward()
        optimizer.step()
    after = float(alignment().detach())
    # Uncentred, as the original's, KA is near 1 for any two post-ReLU features (their common mean dominates);
    # what distillation closes is the gap to 1.
    assert 4 - after < 0.3 * (4 - before) and after <= 4, (before, after)


def test_a_short_run_resumes_to_the_same_student(tmp_path, gzoo_home):
    """pix2pix teacher on vintagify's outputs, pruning, distillation: the student is the pruned config, the
    trained teacher is kept as a model directory; killed in the distillation and resumed, the run ends with
    bit-identical weights."""
    from gzoo import api

    overrides = [*TINY, "stages.teacher.steps=16", "stages.teacher.steps_decay=0", "stages.distill.steps=12",
                 "stages.distill.steps_decay=0"]
    recipe = load_recipe(DEMO, overrides)
    teacher = lambda: api.model_directory(recipe.teacher)  # noqa: E731
    whole = compress(recipe, tmp_path / "whole", teacher)
    config = read_config(Path(whole["student"]))
    assert config["lineage"]["prune"]["widths"] == config["arch_args"]["widths"]
    assert whole["student_macs_paper"] == whole["prune"]["macs_paper"] <= 5.0e6
    assert whole["cat_teacher_macs_paper"] > 5.0e6 and whole["teacher_macs_paper"] > 1e8  # vintagify: the reference
    assert config["lineage"]["stages"] == ["teacher", "prune", "distill", "export"]
    assert read_config(tmp_path / "whole" / "teacher" / "model")["arch_args"]["ngf"] == 8
    assert {"G_recon", "G_gan", "G_distill", "D"} <= set(_log(tmp_path / "whole")[-1])

    with pytest.raises(Interrupted, match="interrupted in stage distill"):
        compress(recipe, tmp_path / "killed", teacher, progress=_stop_at("distill", 7))
    assert not (tmp_path / "killed" / "distill" / "done.json").exists()
    resumed = compress(recipe, tmp_path / "killed", teacher, resume=True)
    assert resumed["prune"]["threshold"] == whole["prune"]["threshold"]
    torch.testing.assert_close(_student(tmp_path / "killed"), _student(tmp_path / "whole"), rtol=0, atol=0)
    assert [r["step"] for r in _log(tmp_path / "killed") if r["stage"] == "distill"] == list(range(1, 13))


def test_a_cycle_gan_teacher_resumes_with_its_image_pools(tmp_path, gzoo_home):
    """Unpaired photos: the CycleGAN teacher stage (two generators, two discriminators, image pools) killed
    after its checkpoint and resumed gives the uninterrupted run's student, weights bit for bit."""
    from photos import photo_crops, write_images

    data = tmp_path / "unpaired"
    write_images(data / "trainA", photo_crops(("astronaut", "coffee"), 40, 3))
    write_images(data / "trainB", photo_crops(("chelsea", "rocket"), 40, 3))
    reference = save_model_dir(tmp_path / "reference", spread_teacher(8).state_dict(), {
        "arch": "cat_inception_generator", "arch_args": {"ngf": 8}})
    overrides = [*TINY, "data.builtin=null", f"data.root={data}", "data.layout=unpaired", "data.load_size=36",
                 "training.cache_targets=false", "training.gan_mode=lsgan", "stages.teacher.pool_size=3",
                 "stages.teacher.steps=8", "stages.teacher.steps_decay=0", "stages.distill.steps=3",
                 "stages.distill.steps_decay=0", "data.held_out_fraction=0.34"]
    recipe = load_recipe(DEMO, overrides)
    whole = compress(recipe, tmp_path / "whole", lambda: reference)
    state = torch.load(tmp_path / "whole" / "teacher" / "checkpoint.pt", weights_only=True)["modules"]
    assert set(state) == {"teacher", "teacher_b", "discriminator_a", "discriminator_b", "pool_a", "pool_b"}
    assert int(state["pool_a"]["count"]) == 3
    terms = _log(tmp_path / "whole")[0]
    assert {"G_A", "G_B", "G_cycle_A", "G_idt_B", "D_A", "D_B"} <= set(terms)
    with pytest.raises(Interrupted):
        compress(recipe, tmp_path / "killed", lambda: reference, progress=_stop_at("teacher", 7))
    resumed = compress(recipe, tmp_path / "killed", lambda: reference, resume=True)
    assert resumed["prune"]["threshold"] == whole["prune"]["threshold"]
    torch.testing.assert_close(_student(tmp_path / "killed"), _student(tmp_path / "whole"), rtol=0, atol=0)


# --- the full demo (opt-in) -------------------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("GZOO_FULL_DEMO") != "1", reason="the full demo takes minutes; set GZOO_FULL_DEMO=1")
def test_the_cat_demo_is_10x_smaller_than_vintagify_3_db_above_identity_and_resumes(tmp_path, run_gzoo, gzoo_home):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run)]
    # Killed inside the distillation.
    kill_when(command, {**os.environ, "GZOO_HOME": str(gzoo_home)}, (run / "distill" / "checkpoint.pt").is_file,
              3600, poll=0.5)
    result = run_gzoo("compress", str(DEMO), "-o", str(run), "--resume", "--json", timeout=3600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    print(json.dumps(summary, indent=1))  # the numbers the README quotes (pytest -s)
    assert summary["macs_reduction"] >= 10
    assert summary["metrics"]["psnr"] - summary["identity_psnr"] >= 3, summary
    board = run_gzoo("leaderboard", "--task", "vintage-photo", "--format", "json")
    row = next(r for r in json.loads(board.stdout)["rows"] if r["id"] == str(Path(summary["student"]).resolve()))
    assert row["method"] == "cat" and row["measured"]["psnr"]["value"] == pytest.approx(summary["metrics"]["psnr"])


def test_the_taps_are_the_originals():
    assert TAPS == ["down_sampling.9", "features.2", "features.5", "features.8"]
    model = cat_inception_generator(ngf=8)
    assert isinstance(dict(model.named_modules())["down_sampling.9"], nn.ReLU)  # after the last downsampling norm


# --- the inception SPADE (GauGAN) -------------------------------------------------------------------------------

def spread_spade_teacher(ngf: int = 64, seed: int = 0) -> nn.Module:
    """An inception SPADE teacher with spread, signed norm scales, as a trained one's are."""
    torch.manual_seed(seed)
    model = cat_inception_spade_generator(ngf=ngf)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and module.weight is not None:
                module.weight.uniform_(-1.5, 1.5)
    return model.eval()


def _meta_spade_macs(widths: CatSpadeWidths, dataset: str = "cityscapes") -> int:
    shape = (1, 36, 256, 512) if dataset == "cityscapes" else (1, 184, 256, 256)
    with torch.device("meta"):
        model = cat_inception_spade_generator(dataset, widths=widths.to_dict()).eval()
        return count_macs(model, torch.zeros(shape)).macs_paper


@pytest.mark.parametrize("dataset", ["cityscapes", "coco-stuff"])
def test_spade_macs_from_widths_equal_the_counter(dataset):
    from test_models_spade_cat import pruned_spade_widths

    for widths in (CatSpadeWidths.uniform(8), CatSpadeWidths.from_dict(pruned_spade_widths())):
        assert spade_macs_paper(widths, dataset) == _meta_spade_macs(widths, dataset)
    assert spade_macs_paper(CatSpadeWidths.uniform(64)) == 109_805_760_288  # the original class, counted


@pytest.fixture(scope="module")
def spade_teacher64() -> nn.Module:
    return spread_spade_teacher(64)


@pytest.mark.parametrize("target", [0.05, 0.10, 0.30, 3.0e10, 5.6e9],
                         ids=["5%", "10%", "30%", "30B-script", "5p6B-script"])
def test_spade_pruning_meets_its_target_at_512x256(spade_teacher64, target):
    """shrink_spade_model's search. Checked against the original's own function (run on CPU on an ngf-16 teacher
    with these spread scales, target 30%, prune_cin_lb 4): the same threshold to float32 precision, a student of
    the same tensor shapes, and its profiler's count equal to gzoo's count of the convs."""
    teacher_macs = spade_macs_paper(spade_teacher64.widths)
    target = target * teacher_macs if target < 1 else target
    pruned = prune_spade_to_target(spade_teacher64, target, cin_lb=16)
    assert pruned.teacher_macs_paper == teacher_macs
    assert 0.99 * target <= pruned.macs_paper <= target, pruned.macs_paper / target
    assert _meta_spade_macs(pruned.widths) == pruned.macs_paper
    widths, scales = pruned.widths, spade_norm_scales(spade_teacher64)
    # fc: the count of fc_norm's scales above the threshold, floored to a multiple of 16, at least 16 x 16.
    assert widths.fc == 16 * max(16, int((scales.fc > pruned.threshold).sum()) // 16) < 1024
    main, spade = scales.blocks[3]  # up_0: every branch is the count of its first norm's scales above it
    assert [*widths.blocks[3].main.res, *widths.blocks[3].main.dw] == [int((s > pruned.threshold).sum()) for s in main]
    assert [*widths.blocks[3].spade.res, *widths.blocks[3].spade.dw] == \
        [int((s > pruned.threshold).sum()) for s in spade]


def test_spade_pruning_is_deterministic_and_its_config_saves_reloads_and_counts_the_same(tmp_path, spade_teacher64):
    target = 0.1 * spade_macs_paper(spade_teacher64.widths)
    first = prune_spade_to_target(spade_teacher64, target)
    assert prune_spade_to_target(spread_spade_teacher(64), target) == first
    torch.manual_seed(0)
    student = pruned_spade_student(spade_teacher64, first.widths)
    arch_args = json.loads(json.dumps({"widths": student.width_config(), "activation": "relu"}))
    directory = save_model_dir(tmp_path / "student", student.state_dict(),
                               {"arch": "cat_inception_spade_generator", "arch_args": arch_args})
    reloaded = load_model_dir(directory)
    assert reloaded.widths == first.widths and reloaded.activation == "relu"
    with torch.device("meta"):
        meta = cat_inception_spade_generator(**arch_args).eval()
        assert count_macs(meta, torch.zeros(1, 36, 256, 512)).macs_paper == first.macs_paper
    # The original's start: every layer new, ReLU, init_net xavier (gain 0.02), batch-norm scales N(1, 0.02).
    weight = student.head_0.res_ops[0][0].conv.weight.detach()
    fan_in, fan_out = weight.shape[1] * weight[0, 0].numel(), weight.shape[0] * weight[0, 0].numel()
    assert float(weight.std()) == pytest.approx(0.02 * (2 / (fan_in + fan_out)) ** 0.5, rel=0.1)
    assert 0.015 < float(student.fc_norm.weight.detach().std()) < 0.025
    assert isinstance(student.up_1.active, nn.ReLU)


def test_the_smallest_spade_target_leaves_fc_256_and_no_branch(spade_teacher64):
    smallest = CatSpadeWidths.from_dict({"fc": 256, "blocks": [{"res": [0] * 3, "dw": [0] * 3,
                                                                 "spade": {"res": [0] * 3, "dw": [0] * 3}}] * 7})
    pruned = prune_spade_to_target(spade_teacher64, spade_macs_paper(smallest), cin_lb=16)
    assert pruned.widths.fc == 256 and pruned.macs_paper == spade_macs_paper(smallest)
    # No block keeps a branch of its own; a norm branch may stay (built, as in the original, but never run).
    assert all(not any(b.main.res) and not any(b.main.dw) for b in pruned.widths.blocks)


@pytest.mark.parametrize(("target", "cin_lb", "message"), [
    (1e6, 16, "is below 3.277e+08, the fewest MACs prune_cin_lb 16 allows at 256x512 (every branch pruned, fc 256)"),
    (2e11, 16, "is not below the teacher's 1.098e+11 MACs at 256x512"),
    (1e9, 80, "prune_cin_lb 80 keeps fc at 16 x 80 = 1280 channels or more, more than the teacher's 1024"),
])
def test_an_impossible_spade_target_is_one_line(target, cin_lb, message):
    with pytest.raises(GzooError) as error:
        check_spade_target(CatSpadeWidths.uniform(64), "cityscapes", target, cin_lb)
    assert message in str(error.value) and "\n" not in str(error.value)


GAUGAN = [("gaugan_cityscapes_a", 3.0e10), ("gaugan_cityscapes_b", 5.6e9)]  # --target_flops of the 30B / 5p6B scripts


@pytest.mark.parametrize(("name", "target"), GAUGAN, ids=[row[0] for row in GAUGAN])
def test_the_gaugan_recipes_carry_the_scripts_settings(name, target):
    recipe = load_recipe(ROOT / "recipes" / "cat" / f"{name}.yaml")
    training, stages = recipe.training, recipe.stages
    assert recipe.method == "cat" and recipe.teacher == "original/cityscapes-gaugan"
    assert (stages.prune.target_macs, stages.prune.prune_cin_lb, stages.prune.input_size) == (target, 16, None)
    assert (training.lambda_distill, training.lambda_gan, training.lambda_recon) == (0.5, 1.0, 0.0)
    assert (training.batch_size, training.gan_mode, training.ndf, training.n_layers_d) == (16, "hinge", 64, 4)
    assert (training.lr, training.beta1, training.beta2, training.seed) == (2e-4, 0.0, 0.9, 233)  # TTUR betas
    teacher = stages.teacher
    assert (teacher.arch, teacher.dataset, teacher.ngf, teacher.norm, teacher.batch_size) == \
        ("cat_inception_spade_generator", "cityscapes", 64, "batch", 16)
    assert (teacher.epochs, teacher.epochs_decay, stages.distill.epochs, stages.distill.epochs_decay) == \
        (100, 100, 100, 100)
    assert (recipe.data.layout, recipe.data.load_size, recipe.data.crop_size) == ("cityscapes", 512, 512)
    gaugan = recipe.gaugan  # base_spade_distiller's and spade_model's defaults
    assert (gaugan.lambda_feat, gaugan.lambda_vgg, gaugan.num_d, gaugan.norm_d, gaugan.ttur, gaugan.perceptual) == \
        (10.0, 10.0, 2, "spectralinstance", True, "vgg19")
    # The target is below the teacher's 109.8G and reachable: pruning a teacher with spread scales meets it.
    assert check_spade_target(CatSpadeWidths.uniform(64), "cityscapes", target, 16) == 109_805_760_288


@pytest.mark.parametrize(("override", "message"), [
    ("stages.prune.target_macs=1.0e+8", "is below 3.277e+08, the fewest MACs prune_cin_lb 16 allows at 256x512"),
    ("stages.prune.keep_teacher_weights=true", "CAT's GauGAN pruning keeps no teacher weight"),
    ("stages.prune.input_size=256", "remove stages.prune.input_size"),
    ("stages.teacher.norm=instance_affine", "set stages.teacher.norm to batch"),
    ("stages.teacher.arch=spade_generator", "'stages.teacher.arch' must be one of cat_inception_generator, "
                                            "cat_inception_spade_generator"),
    (["data.layout=paired", "evaluate.metrics=[fid]"], "set data.layout to cityscapes and stages.teacher.dataset to "
                                                       "cityscapes"),
    ("stages.teacher.dataset=coco-stuff", "the only label-map layout gzoo reads"),
])
def test_a_gaugan_recipe_cat_cannot_run_fails_when_it_loads(override, message):
    with pytest.raises(GzooError) as error:
        load_recipe(ROOT / "recipes" / "cat" / "gaugan_cityscapes_b.yaml", override if isinstance(override, list)
                    else [override])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("arch", ["cat_inception_spade_generator", "spade_generator"])
def test_a_gaugan_teacher_on_image_data_is_refused_in_one_line_before_training(tmp_path, arch):
    from gzoo.models import create_model

    model = create_model(arch, ngf=1)
    directory = save_model_dir(tmp_path / "gaugan", model.state_dict(), {"arch": arch, "arch_args": {"ngf": 1}})
    document = yaml.safe_load(DEMO.read_text())
    document["teacher"] = str(directory)
    del document["stages"]["teacher"]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(GzooError) as error:
        compress(load_recipe(path), tmp_path / "run", lambda: directory)
    assert "layout) needs an image-to-image generator; name a teacher that fits the data" in str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
