"""The compression engine and GAN Compression pipeline: losses, weight transfer, resume, torchrun, gzoo compress."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from processes import kill_when
from torch import nn

from gzoo.compress.engine import Processes, Schedule, Trainer, TrainingSettings
from gzoo.compress.losses import gan_loss
from gzoo.compress.transfer import start_as_identity, transfer_largest_l1
from gzoo.metrics import count_params
from gzoo.models import create_model
from gzoo.models.patchgan import PatchGanDiscriminator

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo" / "vintagify_gan_compression.yaml"
# The demo recipe shrunk to seconds: 32x32 crops, a few steps per stage, a small evolution search.
TINY = ["--set", "data.load_size=32", "--set", "data.crop_size=32", "--set", "data.crops_per_photo=2",
        "--set", "stages.distill.steps=3", "--set", "stages.distill.steps_decay=1",
        "--set", "stages.supernet.steps=4", "--set", "stages.supernet.steps_decay=2",
        "--set", "stages.finetune.steps=2", "--set", "stages.finetune.steps_decay=0",
        "--set", "stages.search.budget=1.0e8", "--set", "stages.search.population_size=4",
        "--set", "stages.search.iterations=1", "--set", "training.log_every=1",
        "--set", "training.checkpoint_every=1", "--set", "training.threads=1"]


def test_patchgan_has_the_original_parameter_count():
    # CycleGAN's D: ndf 64, n_layers 3, instance norm (2.765 M, as the CycleGAN code prints it). pix2pix's sees
    # the input beside the output: 3 more input channels in the first 4x4 conv to 64.
    assert count_params(PatchGanDiscriminator(3, 64, 3)) == 2_764_737
    assert count_params(PatchGanDiscriminator(6, 64, 3)) == 2_764_737 + 3 * 64 * 4 * 4
    assert PatchGanDiscriminator(3)(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_gan_losses_follow_the_originals():
    prediction = torch.tensor([[-2.0, 0.5, 3.0]])
    assert gan_loss("hinge", prediction, True).item() == pytest.approx((3 + 0.5 + 0) / 3)
    assert gan_loss("hinge", prediction, False).item() == pytest.approx((0 + 1.5 + 4) / 3)
    assert gan_loss("hinge", prediction, True, for_discriminator=False).item() == pytest.approx(-0.5)
    assert gan_loss("lsgan", prediction, True).item() == pytest.approx((9 + 0.25 + 4) / 3)
    assert gan_loss("lsgan", prediction, False).item() == pytest.approx((4 + 0.25 + 9) / 3)


def test_transfer_at_equal_width_copies_the_teacher_exactly():
    torch.manual_seed(0)
    teacher = create_model("mobile_resnet_generator", ngf=16).eval()
    student = create_model("mobile_resnet_generator", ngf=16).eval()
    copied = transfer_largest_l1(teacher, student)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x))
    assert len(copied) == 1 + 2 + 9 + 2 + 1  # stem, downsampling, blocks, upsampling, head convs


def test_transfer_keeps_the_channels_of_largest_l1_norm():
    torch.manual_seed(0)
    teacher = create_model("mobile_resnet_generator", ngf=16)
    student = create_model("mobile_resnet_generator", ngf=8)
    transfer_largest_l1(teacher, student)
    stem = teacher.model[1].weight
    kept = stem.abs().sum((1, 2, 3)).argsort(descending=True)[:8].sort().values
    torch.testing.assert_close(student.model[1].weight, stem[kept], rtol=0, atol=0)
    # The first downsampling reads only the kept stem channels.
    down = teacher.model[4].weight[:, kept]
    rows = down.abs().sum((1, 2, 3)).argsort(descending=True)[:16].sort().values
    torch.testing.assert_close(student.model[4].weight, down[rows], rtol=0, atol=0)
    # Residual blocks return to the trunk's kept channels, so the skip connections line up.
    trunk = teacher.model[7].weight[:, rows].abs().sum((1, 2, 3)).argsort(descending=True)[:32].sort().values
    last_pointwise = teacher.model[10].conv_block[-2].conv[2]
    assert torch.equal(student.model[10].conv_block[-2].conv[2].bias, last_pointwise.bias[trunk])


def test_transfer_from_a_plain_resnet_leaves_the_separable_blocks_alone():
    teacher = create_model("resnet_generator", ngf=16)
    student = create_model("mobile_resnet_generator", ngf=8)
    before = student.model[10].conv_block[1].conv[0].weight.clone()
    copied = transfer_largest_l1(teacher, student)
    assert "model.10" not in copied and {"model.1", "model.4", "model.7", "model.26"} <= set(copied)
    assert torch.equal(student.model[10].conv_block[1].conv[0].weight, before)


def test_blocks_the_transfer_cannot_copy_start_as_the_identity():
    # From a plain ResNet with affine norms (vintagify's), the student starts as the teacher's skeleton with its
    # residual blocks left out, instead of with random blocks added to the trunk.
    torch.manual_seed(0)
    teacher = create_model("resnet_generator", ngf=8, norm="instance_affine").eval()
    student = create_model("mobile_resnet_generator", ngf=8, norm="instance_affine").eval()
    for norm in (m for m in teacher.modules() if isinstance(m, nn.InstanceNorm2d)):
        nn.init.normal_(norm.weight, 1.0, 0.5)  # scales that are not all 1, so copying them shows
    copied = transfer_largest_l1(teacher, student)
    blocks = [f"model.{i}" for i in range(10, 19)]
    assert start_as_identity(student, copied) == blocks
    skeleton = nn.Sequential(*(nn.Identity() if f"model.{i}" in blocks else layer
                               for i, layer in enumerate(teacher.model)))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(student(x), skeleton(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(student(x), teacher(x), atol=1e-2)
    # Without a scale to zero (the originals' plain instance norm) the blocks keep their initialisation.
    plain = create_model("mobile_resnet_generator", ngf=8)
    assert start_as_identity(plain, transfer_largest_l1(create_model("resnet_generator", ngf=8), plain)) == []


def test_an_affine_norm_supernet_shares_its_weights_with_extracted_subnets():
    # A student takes its teacher's norm (vintagify's is affine): sub-networks slice the norms' scales too.
    torch.manual_seed(0)
    supernet = create_model("super_mobile_resnet_generator", ngf=16, norm="instance_affine").eval()
    for norm in (m for m in supernet.modules() if isinstance(m, nn.InstanceNorm2d) and m.affine):
        nn.init.normal_(norm.weight, 1.0, 0.5)
        nn.init.normal_(norm.bias, 0.0, 0.5)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    config = "8_16_8_16_8_16_8_16"
    supernet.set_config(config)
    subnet = supernet.extract_subnet(config).eval()
    with torch.no_grad():
        torch.testing.assert_close(subnet(x), supernet(x), atol=1e-6, rtol=0)


def test_cached_teacher_outputs_equal_fresh_ones_and_run_the_teacher_once_per_input():
    from gzoo.compress.engine import FeatureTaps
    from gzoo.compress.gan_compression import TAPS, TeacherOutputs

    torch.manual_seed(0)
    teacher = create_model("resnet_generator", ngf=8).eval()
    passes = []
    teacher.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))
    taps = FeatureTaps(teacher, TAPS)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    batch, keys = images[[0, 1, 0]], ("a:0:0:False", "b:0:0:False", "a:0:0:False")
    fresh_output, fresh_features = TeacherOutputs(teacher, taps, cache=False)(batch, keys)
    cached = TeacherOutputs(teacher, taps, cache=True)
    cached(batch[:1], keys[:1])
    output, features = cached(batch, keys)
    assert passes == [3, 1, 1]  # the cached run computed "b" alone; "a" came from its first call
    # Equal up to float rounding: a conv over a batch of 1 and of 3 sums in a different order.
    torch.testing.assert_close(output, fresh_output, atol=1e-4, rtol=1e-4)
    for got, expected in zip(features, fresh_features, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    cached(batch, keys)
    assert passes == [3, 1, 1]


@pytest.mark.parametrize("width, height", [(384, 384), (1203, 600)])
def test_photo_crops_fill_a_grid_and_never_touch_the_held_out_band(width, height):
    from gzoo.compress.data import photo_crop_boxes

    size = 128
    boxes = photo_crop_boxes(width, height, size, train=16, held_out=2)
    train, held_out = boxes["train"], boxes["held_out"]
    assert len(train) == len(set(train)) == 16 and len(held_out) == 2
    assert len({left for left, _ in train}) == 4 and len({top for _, top in train}) == 4  # a 4x4 grid
    for left, top in train + held_out:
        assert 0 <= left <= width - size and 0 <= top <= height - size
    band = min(left for left, _ in held_out)
    assert band == width - size and max(left for left, _ in train) + size <= band
    assert {top for _, top in held_out} == {0, height - size}


def test_a_photo_too_small_for_both_splits_is_refused():
    from gzoo.compress.data import photo_crop_boxes
    from gzoo.errors import GzooError

    with pytest.raises(GzooError, match="no room for training and held-out crops"):
        photo_crop_boxes(200, 300, 128, train=4, held_out=1)


@pytest.mark.parametrize("photo_scale", [2, 4.5])
def test_photo_scale_sets_the_size_photos_are_cut_from(tmp_path, photo_scale):
    import numpy as np
    from PIL import Image
    from skimage import data

    from gzoo.compress.data import make_skimage_photos
    from gzoo.compress.settings import DataSettings

    size = 16
    make_skimage_photos(tmp_path, DataSettings(load_size=size, crop_size=size, crops_per_photo=4,
                                               held_out_crops_per_photo=1, photo_scale=photo_scale))
    side = round(photo_scale * size)  # the astronaut is square
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.BICUBIC))
    first = np.asarray(Image.open(tmp_path / "train" / "astronaut_train_00.png"))
    held_out = np.asarray(Image.open(tmp_path / "train" / "astronaut_held_out_00.png"))
    np.testing.assert_array_equal(first, photo[:size, :size])
    np.testing.assert_array_equal(held_out, photo[:size, side - size:])


def _train_toy(directory: Path, stop_after: int | None = None) -> tuple[nn.Module, list[dict]]:
    """A linear model regressed to fixed targets for 6 steps, optionally stopped after ``stop_after`` steps."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = torch.randn(6, 8, 4), torch.randn(6, 8, 2)
    settings = TrainingSettings(checkpoint_every=2, log_every=1, lr=0.05)
    trainer = Trainer(directory, {"model": model}, {"G": ["model"]}, settings, Schedule(4, 2), settings.lr,
                      Processes(), directory / "log.jsonl", "toy")
    trainer.resume()

    def step(index: int):
        if stop_after is not None and index == stop_after:
            raise KeyboardInterrupt  # a kill between two checkpoints
        loss = nn.functional.mse_loss(model(data[0][index]), data[1][index])
        return {"G": loss}, {"loss": loss}

    try:
        trainer.run(step)
    except KeyboardInterrupt:
        pass
    return model, [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]


def test_a_resumed_stage_ends_where_an_uninterrupted_one_does(tmp_path):
    whole, _ = _train_toy(tmp_path / "whole")
    _train_toy(tmp_path / "killed", stop_after=3)  # checkpoint at step 2, step 3 lost
    resumed, log = _train_toy(tmp_path / "killed")
    torch.testing.assert_close(resumed.weight, whole.weight, rtol=0, atol=0)
    # Step 3 is done again from the checkpoint; its first, lost run is dropped from the log on resume (issue 19:
    # a log never runs back).
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["lr"] == pytest.approx(0.05 * (1 - 1 / 3))  # linear decay over the last 2 steps


def test_a_kill_before_the_first_checkpoint_leaves_a_log_that_starts_once(tmp_path):
    _train_toy(tmp_path / "killed", stop_after=1)  # step 1 logged, no checkpoint yet
    _, log = _train_toy(tmp_path / "killed")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_schedule_decays_linearly_to_zero():
    schedule = Schedule(constant=10, decay=4)
    assert [schedule.factor(s) for s in (0, 9, 10, 11, 14)] == [1, 1, 1, 0.8, pytest.approx(0.2)]


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_demo_recipe_runs_end_to_end_resumes_and_reaches_the_leaderboard(tmp_path, run_gzoo, gzoo_home):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run), *TINY]
    env = {**os.environ, "GZOO_HOME": str(gzoo_home)}
    kill_when(command, env, (run / "supernet" / "checkpoint.pt").is_file, 240)  # inside the supernet stage
    killed_log = _log(run)
    assert not (run / "supernet" / "done.json").exists()

    again = run_gzoo("compress", str(DEMO), "-o", str(run), *TINY)
    assert again.returncode == 2 and "pass --resume" in again.stderr
    resumed = run_gzoo("compress", str(DEMO), "-o", str(run), "--resume", "--json", *TINY)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)

    new = _log(run)[len(killed_log):]
    assert {r["stage"] for r in new} == {"supernet", "finetune"}  # distill was finished: not repeated
    first_supernet = next(r["step"] for r in new if r["stage"] == "supernet")
    assert first_supernet > 1  # went on from the checkpoint
    assert [r["step"] for r in new if r["stage"] == "finetune"] == [1, 2]

    student = Path(summary["student"])
    config = json.loads((student / "config.json").read_text())
    assert config["arch_args"]["config"] == summary["config"] and config["teacher"] == "community/vintagify-cyclegan"
    assert config["lineage"]["stages"] == ["distill", "supernet", "search", "finetune", "export"]
    assert summary["student_macs_paper"] <= 1.0e8 < summary["teacher_macs_paper"]
    assert summary["search"]["macs_paper"] == summary["student_macs_paper"]
    assert 0 < summary["metrics"]["psnr"] < 60 and summary["identity_psnr"] > 5
    rows = (run / "search" / "results.csv").read_text().splitlines()
    assert rows[0] == "config,macs,score" and rows[1].startswith(summary["config"] + ",")

    board = run_gzoo("leaderboard", "--task", "vintage-photo", "--format", "json")
    assert board.returncode == 0, board.stderr
    row = next(r for r in json.loads(board.stdout)["rows"] if r["id"] == str(student.resolve()))
    assert row["local"] and row["method"] == "gan-compression" and row["input"] == "3x32x32"
    assert row["measured_headline"] == "psnr"
    assert row["measured"]["psnr"]["value"] == pytest.approx(summary["metrics"]["psnr"])
    assert row["macs_paper"] == summary["student_macs_paper"]
    assert row["macs_reduction"] == pytest.approx(summary["macs_reduction"])


def test_two_processes_give_the_first_step_loss_of_one(tmp_path, gzoo_home):
    """torchrun with 2 CPU processes (gloo), each on half of the global batch, logs the loss one process does."""
    tiny = [*TINY, "--set", "training.batch_size=4", "--set", "stages.distill.steps=1",
            "--set", "stages.distill.steps_decay=0", "--set", "stages.supernet.steps=1",
            "--set", "stages.supernet.steps_decay=0", "--set", "evaluate.metrics=[psnr]"]
    env = {**os.environ, "GZOO_HOME": str(gzoo_home)}
    single = subprocess.run([sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(tmp_path / "one"),
                             *tiny], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", "2", "-m", "gzoo", "compress", str(DEMO), "-o", str(tmp_path / "two"),
                             *tiny], env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = _log(tmp_path / "one")[0], _log(tmp_path / "two")[0]
    assert one["stage"] == two["stage"] == "distill" and one["step"] == two["step"] == 1
    for term in ("D", "G_gan", "G_recon", "G_distill"):
        assert two[term] == pytest.approx(one[term], rel=1e-5), term


@pytest.mark.parametrize(("overrides", "message"), [
    (["stages.search.budget=1000"], "below the smallest config"),
    (["data.load_size=150"], "training.cache_teacher needs data.load_size equal to data.crop_size"),
    (["data.builtin=null"], "no data; set 'data.root'"),
    (["data.photo_scale=1.5"], "data.photo_scale 1.5 leaves no room for training crops"),
    (["data.builtin=null", "data.layout=single", "data.root=no-such-folder"], "no-such-folder/train: no such folder"),
    (["evaluate.metrics=[psnr, miou]"], "evaluating miou needs 'evaluate.segmenter' and 'evaluate.labels'"),
])
def test_a_bad_recipe_fails_before_anything_runs(tmp_path, run_gzoo, overrides, message):
    run = tmp_path / "run"
    result = run_gzoo("compress", str(DEMO), "-o", str(run), *(f"--set={o}" for o in overrides))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not run.exists()


def test_search_by_fid_against_a_folder_of_real_images(tmp_path, gzoo_home, inception_weights):
    """FID as the search criterion (the originals' for unpaired tasks); no fine-tuning stage."""
    from photos import photo_crops, write_images

    reference = tmp_path / "reference"
    write_images(reference, photo_crops(("chelsea", "coffee"), 64, 3))
    env = {**os.environ, "GZOO_HOME": str(gzoo_home), "GZOO_INCEPTION_WEIGHTS": str(inception_weights)}
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run), "--json", *TINY,
                             "--set", "stages.finetune=null", "--set", "stages.search.metric=fid",
                             "--set", f"stages.search.reference={reference}", "--set", "evaluate.metrics=[psnr]",
                             "--set", "stages.search.max_images=8", "--set", "stages.search.population_size=3"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["search"]["metric"] == "fid" and not (run / "finetune").exists()
    scores = [float(line.split(",")[2]) for line in (run / "search" / "results.csv").read_text().splitlines()[1:]]
    assert len(scores) >= 2 and all(s > 0 for s in scores) and scores == sorted(scores)
    assert summary["search"]["score"] == pytest.approx(scores[0])


def test_search_by_miou_scores_what_the_final_evaluation_measures(tmp_path, run_gzoo):
    """mIoU as the search criterion (the originals' for cityscapes), with DRN-D-105 at random weights and label
    maps from a colour rule: without fine-tuning the exported student is the searched sub-network, so the
    search's best score and the final evaluation's mIoU, computed by separate code, must agree."""
    import numpy as np
    from PIL import Image

    from gzoo.compress.data import make_skimage_photos
    from gzoo.compress.settings import DataSettings

    torch.manual_seed(0)
    segmenter = tmp_path / "drn.pth"
    torch.save(create_model("drn_d_105_seg").state_dict(), segmenter)
    # The held-out crops the run will make, labelled by their dominant channel (train ids 0..2).
    photos = tmp_path / "photos"
    make_skimage_photos(photos, DataSettings(load_size=32, crop_size=32, crops_per_photo=2))
    labels = tmp_path / "labels"
    labels.mkdir()
    for name in (photos / "held_out.meta").read_text().split():
        dominant = np.asarray(Image.open(photos / "train" / name)).argmax(2).astype(np.uint8)
        Image.fromarray(dominant).save(labels / name)
    run = tmp_path / "run"
    result = run_gzoo("compress", str(DEMO), "-o", str(run), "--json", *TINY,
                      "--set", "stages.finetune=null", "--set", "stages.search.metric=miou",
                      "--set", f"stages.search.segmenter={segmenter}", "--set", f"stages.search.labels={labels}",
                      "--set", "evaluate.metrics=[miou]", "--set", f"evaluate.segmenter={segmenter}",
                      "--set", f"evaluate.labels={labels}", "--set", "stages.search.population_size=3")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["search"]["metric"] == "miou"
    scores = [float(line.split(",")[2]) for line in (run / "search" / "results.csv").read_text().splitlines()[1:]]
    assert len(scores) >= 2 and all(-100 <= s <= 0 for s in scores) and scores == sorted(scores)
    assert summary["metrics"]["miou"] == pytest.approx(-summary["search"]["score"], abs=1e-6)
