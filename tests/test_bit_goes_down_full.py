"""Bit-Goes-Down at full demo size, and a published ResNet-18 quantized end to end: minutes each on 2 cores, so
they run only when asked: ``GZOO_FULL_DEMO=1 python -m pytest tests/test_bit_goes_down_full.py``."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from gzoo.data.modeldir import save_model_dir
from gzoo.models import load_model_dir

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "recipes" / "demo" / "vintagify_pq.yaml"
LARGE_BLOCKS = ROOT / "recipes" / "bit_goes_down" / "resnet18_large_blocks.yaml"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "kill-the-bits"
FULL = pytest.mark.skipif(os.environ.get("GZOO_FULL_DEMO") != "1",
                          reason="minutes on 2 cores; set GZOO_FULL_DEMO=1")
KMEANS = "psnr, plain k-means on the weights (same d and k)"
BEFORE = "psnr, EM before fine-tuning"
FINAL = "psnr, after the global fine-tuning (final)"


@FULL
def test_the_demo_is_15x_smaller_and_beats_k_means_on_the_weights(tmp_path, run_gzoo):
    result = run_gzoo("compress", str(DEMO), "-o", str(tmp_path / "run"), "--json", timeout=3600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["size"]["size_ratio"] >= 15
    baselines = summary["baselines"]
    assert baselines[FINAL] > baselines[KMEANS], baselines
    assert baselines[FINAL] > baselines[BEFORE], baselines
    info = json.loads(run_gzoo("info", summary["student"], "--json").stdout)["size"]
    assert info["dense_bytes"] / info["packed_bytes"] >= 15
    board = run_gzoo("leaderboard", "--task", "vintage-photo", "--format", "json")
    row = next(r for r in json.loads(board.stdout)["rows"] if r["id"] == str(Path(summary["student"]).resolve()))
    assert row["measured"]["psnr"]["value"] == pytest.approx(summary["metrics"]["psnr"])


@FULL
@pytest.mark.xfail(reason="not reached yet: at 8 centroid steps chelsea comes out as 287 (lynx, a wild cat), at 16 "
                          "as 644 (matchstick); the packed size matches the published one", strict=False)
def test_a_published_resnet18_quantized_with_large_blocks_still_knows_a_cat_and_an_espresso(tmp_path, gzoo_home):
    """The decoded small-blocks checkpoint as a dense teacher, quantized again with the README's large-block
    setting on 32 real photo crops (10 EM iterations, a few centroid steps per layer, no global fine-tuning):
    chelsea is still a cat, coffee an espresso, and the packed size is the published large-blocks one to the
    byte."""
    from PIL import Image
    from skimage import data as photos
    from test_kill_the_bits import CAT_CLASSES, PACKED_BYTES, imagenet_batch

    from gzoo.compress.pipeline import compress
    from gzoo.compress.recipe import load_recipe
    from gzoo.zoo.converters import get_converter

    if not FIXTURES.is_dir():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {FIXTURES}")
    converted = get_converter("kill-the-bits")(FIXTURES / "resnet18_small_blocks.pth", None, {})
    teacher = save_model_dir(tmp_path / "teacher", converted.state_dict,
                             {"arch": "resnet18", "arch_args": {}, "input": {"channels": 3, "height": 224,
                                                                             "width": 224}})
    classes = tmp_path / "classes"
    for label, photo in ((281, "chelsea"), (967, "coffee")):
        (classes / str(label)).mkdir(parents=True)
        Image.fromarray(getattr(photos, photo)()).save(classes / str(label) / f"{photo}.png")
    document = yaml.safe_load(LARGE_BLOCKS.read_text())
    document.update({
        "teacher": str(teacher),
        # 112x112 training crops (a quarter of the cost); the student is evaluated at 224, as gzoo eval does.
        "data": {"builtin": "skimage-photos", "load_size": 112, "crop_size": 112, "crops_per_photo": 4,
                 "held_out_crops_per_photo": 1},
        "evaluate": {"data": str(classes), "metrics": ["top1", "top5"]},
    })
    document["quantize"].update({"n_iter": 10, "n_activations": 8})
    # The published checkpoints hold no batch-norm statistics, so the teacher runs at 0 and 1 (as the original's
    # inference code does) and its activations grow from layer to layer (layer2's EM objective is ~10,000 times
    # layer1's): at lr 0.05 four centroid steps already diverge, so they take lr 1e-3 here; and no global
    # fine-tuning, whose train-mode statistics would replace the 0 and 1 the weights were tuned for.
    document["training"].update({"batch_size": 4, "threads": 1, "lr": 1e-3})
    document["stages"] = {"layer": {"steps": 8}, "finetune": None}
    path = tmp_path / "large.yaml"
    path.write_text(yaml.safe_dump(document))
    summary = compress(load_recipe(path), tmp_path / "run", lambda: teacher)
    assert summary["size"]["packed_bytes"] == PACKED_BYTES["resnet18_large_blocks"]
    student = load_model_dir(Path(summary["student"])).eval()
    with torch.no_grad():
        cat, coffee = student(imagenet_batch("chelsea", "coffee")).argmax(dim=1).tolist()
    assert cat in CAT_CLASSES
    assert coffee == 967  # espresso
    assert set(summary["metrics"]) == {"top1", "top5"}  # gzoo eval's classifier protocol on the class folders
