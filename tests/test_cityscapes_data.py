"""GauGAN's Cityscapes label-map data: the ``cityscapes`` layout of gzoo compress, its held-out copy in the
pipeline, and gzoo eval of a label-map generator on a Cityscapes root.

The dataset is a tiny Cityscapes tree made here: scikit-image's photos as leftImg8bit, label ids quantised from
the photos' colours, instance maps as 16-bit images with a few instance regions, as Cityscapes stores them
(PIL reads them as int32 'I' images).
"""

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from photos import write_cityscapes
from PIL import Image

from gzoo import api
from gzoo.compress import method as method_registry
from gzoo.compress.data import TrainingData, find_splits, held_out_inputs
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.pipeline import compress
from gzoo.compress.recipe import load_recipe
from gzoo.compress.settings import DataSettings
from gzoo.data.cityscapes import to_train_ids
from gzoo.data.modeldir import read_config, save_model_dir
from gzoo.errors import GzooError
from gzoo.models import load_model_dir
from gzoo.models.cat import cat_inception_spade_generator

WIDTH, HEIGHT = 768, 384  # 2:1 like Cityscapes' 2048x1024, smaller to keep the tests fast
TRAIN = {"aachen": ("astronaut", "coffee", "chelsea"), "bremen": ("rocket", "hubble_deep_field", "retina")}
VAL = {"frankfurt": ("immunohistochemistry", "stereo_motorcycle")}
LABEL_NC = 35  # cityscapes GauGAN: 35 label channels + 1 instance edge channel


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(root, "train", TRAIN, (WIDTH, HEIGHT))
    write_cityscapes(root, "val", VAL, (WIDTH, HEIGHT))
    return root


def _settings(root: Path, **changes) -> DataSettings:
    return replace(DataSettings(root=str(root), layout="cityscapes", load_size=512, crop_size=512,
                                held_out_fraction=1 / 3), **changes)


def _expected_input(labels: np.ndarray, instance: np.ndarray) -> torch.Tensor:
    """One-hot label ids and instance edges (a pixel whose 4-neighbour is another instance), computed here."""
    one_hot = (np.arange(LABEL_NC)[:, None, None] == labels[None]).astype(np.float32)
    edge = np.zeros(instance.shape, dtype=bool)
    horizontal, vertical = instance[:, 1:] != instance[:, :-1], instance[1:] != instance[:-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:] |= vertical
    edge[:-1] |= vertical
    return torch.from_numpy(np.concatenate([one_hot, edge[None].astype(np.float32)]))


def _preprocessed(root: Path, split: str, name: str, load: int, box: tuple[int, int, int, int] | None, flip: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """A frame as the original's cityscapes dataset makes it, from the files: (input, photo in [-1, 1])."""
    stem = "_".join(name.split("_")[:3])
    city = stem.split("_")[0]
    size = (load, int(load * HEIGHT / WIDTH))
    images = [Image.open(root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png").resize(size, Image.NEAREST)
              for kind in ("labelIds", "instanceIds")]
    images.append(Image.open(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png").convert("RGB")
                  .resize(size, Image.BICUBIC))
    images = [image.crop(box) if box else image for image in images]
    if flip:
        images = [image.transpose(Image.FLIP_LEFT_RIGHT) for image in images]
    labels, instance, photo = (np.asarray(image) for image in images)
    target = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1
    return _expected_input(labels.astype(np.int64), instance.astype(np.int64)), target


def test_frames_are_paired_by_city_sequence_and_frame_and_a_missing_partner_is_one_line(cityscapes_root, tmp_path):
    splits = find_splits(_settings(cityscapes_root), cityscapes_root)
    names = sorted(p.name for p in splits.train + splits.held_out)
    assert names == [f"{city}_{i:06d}_000019_gtFine_labelIds.png" for city in TRAIN for i in range(3)]
    frame = splits.frames[splits.train[0]]
    assert frame.instance.name == frame.labels.name.replace("labelIds", "instanceIds")
    assert frame.photo == cityscapes_root / "leftImg8bit" / "train" / frame.stem.split("_")[0] / \
        f"{frame.stem}_leftImg8bit.png"
    for missing in ("gtFine/train/bremen/bremen_000001_000019_gtFine_instanceIds.png",
                    "leftImg8bit/train/bremen/bremen_000001_000019_leftImg8bit.png"):
        broken = tmp_path / missing.split("/")[-1]
        shutil.copytree(cityscapes_root, broken)
        (broken / missing).unlink()
        with pytest.raises(GzooError) as refused:
            find_splits(_settings(broken), broken)
        message = str(refused.value)
        assert "\n" not in message and "bremen_000001_000019_gtFine_labelIds.png: no " in message
        assert Path(missing).name in message


@pytest.mark.parametrize("load_size", [512, 1024])  # 1024: scaled to 1024x512, then a random 512x256 crop
def test_a_batch_is_the_one_hot_of_the_nearest_resized_maps_and_the_bicubic_photo_cropped_and_flipped_alike(
        cityscapes_root, load_size):
    data = TrainingData(_settings(cityscapes_root, load_size=load_size), find_splits(
        _settings(cityscapes_root, load_size=load_size), cityscapes_root))
    seen = set()
    for step in range(8):
        batch = data.batch(step, 1, seed=3)
        assert batch.inputs.shape == (1, 36, 256, 512) and batch.targets.shape == (1, 3, 256, 512)
        name, left, top, flip = batch.keys[0].split(":")
        left, top, flip = int(left), int(top), flip == "True"
        box = (left, top, left + 512, top + 256) if load_size > 512 else None
        expected_input, expected_target = _preprocessed(cityscapes_root, "train", name, load_size, box, flip)
        assert torch.equal(batch.inputs[0], expected_input)
        torch.testing.assert_close(batch.targets[0], expected_target, rtol=0, atol=1e-6)
        seen.add((flip, (left, top) != (0, 0)))
    # Both flips occurred, and with load_size 1024 crops away from the corner: the check above saw each case.
    assert {flip for flip, _ in seen} == {False, True}
    assert any(moved for _, moved in seen) == (load_size > 512)
    # A flipped input is not its unflipped self: the flip is real on these maps.
    assert not torch.equal(expected_input, expected_input.flip(-1))


def test_batches_repeat_for_the_same_seed_and_step_and_two_processes_share_one_batch(cityscapes_root):
    settings = _settings(cityscapes_root, load_size=1024)
    data = TrainingData(settings, find_splits(settings, cityscapes_root))
    whole = data.batch(5, 4, seed=1)
    assert torch.equal(whole.inputs, data.batch(5, 4, seed=1).inputs) and whole.keys == data.batch(5, 4, 1).keys
    assert whole.keys != data.batch(6, 4, seed=1).keys
    shards = [data.batch(5, 4, seed=1, rank=rank, world_size=2) for rank in (0, 1)]
    order = [0, 2, 1, 3]  # rank 0 holds positions 0 and 2, rank 1 positions 1 and 3
    torch.testing.assert_close(torch.cat([s.inputs for s in shards]), whole.inputs[order], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([s.targets for s in shards]), whole.targets[order], rtol=0, atol=0)
    assert shards[0].keys + shards[1].keys == tuple(whole.keys[i] for i in order)


def test_the_held_out_split_is_disjoint_from_training_by_name_or_by_meta_file(cityscapes_root, tmp_path):
    splits = find_splits(_settings(cityscapes_root), cityscapes_root)
    every = sorted(splits.frames)
    assert splits.held_out == (every[0], every[3]) and set(splits.train) == set(every) - set(splits.held_out)
    inputs, names = held_out_inputs(_settings(cityscapes_root), splits, 512)
    assert names == [p.name for p in splits.held_out] and inputs.shape == (2, 36, 256, 512)
    for one, name in zip(inputs, names, strict=True):
        assert torch.equal(one, _preprocessed(cityscapes_root, "train", name, 512, None, False)[0])
    meta = tmp_path / "held_out.meta"
    meta.write_text("bremen_000002_000019_gtFine_labelIds.png\n")
    listed = find_splits(_settings(cityscapes_root, held_out_meta=str(meta)), cityscapes_root)
    assert [p.name for p in listed.held_out] == ["bremen_000002_000019_gtFine_labelIds.png"]
    assert len(listed.train) == 5 and not set(listed.train) & set(listed.held_out)


def test_data_of_another_size_than_the_generator_takes_is_refused_in_one_line(cityscapes_root):
    with pytest.raises(GzooError) as refused:
        find_splits(_settings(cityscapes_root, load_size=286, crop_size=256), cityscapes_root)
    message = str(refused.value)
    assert "\n" not in message and "gives 256x128 label maps, but the generator takes 512x256" in message
    assert "set data.load_size and data.crop_size to 512" in message


def test_label_ids_become_cityscapes_train_ids():
    ids = torch.tensor([[7, 26, 0, 8], [11, 23, 24, 33], [29, 31, 6, 21]])
    assert to_train_ids(ids).tolist() == [[0, 13, 255, 1], [2, 10, 11, 18], [255, 16, 255, 8]]
    with pytest.raises(GzooError, match="holds label 255, outside Cityscapes' label ids 0..33"):
        to_train_ids(torch.tensor([3, 255]))


def _spade_dir(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = cat_inception_spade_generator(ngf=4)
    return save_model_dir(path, model.state_dict(), {
        "arch": "cat_inception_spade_generator", "arch_args": {"ngf": 4}, "task": "cityscapes",
        "input": {"channels": 36, "height": 256, "width": 512}})


@pytest.fixture(scope="module")
def spade_models(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    return _spade_dir(folder / "student", 0), _spade_dir(folder / "teacher", 1)


def test_eval_of_a_label_map_generator_against_a_teacher_on_a_cityscapes_root(cityscapes_root, spade_models):
    student, teacher = spade_models
    itself = api.evaluate(student, cityscapes_root, ["psnr"], teacher=student, store=False)
    assert itself["metrics"]["psnr"] == "inf"
    result = api.evaluate(student, cityscapes_root, ["psnr", "ssim"], teacher=teacher, store=False)
    protocol = result["protocols"]["psnr"]
    assert protocol["images"] == 2 and protocol["input"].startswith("label_map_to_input(cityscapes)")
    assert protocol["data"] == f"cityscapes val label and instance maps of {cityscapes_root}"
    frames = [("frankfurt_000000_000019", 0), ("frankfurt_000001_000019", 1)]
    inputs = torch.stack([_preprocessed(cityscapes_root, "val", name, 512, None, False)[0] for name, _ in frames])
    with torch.inference_mode():
        outputs = [load_model_dir(path)(inputs).clamp(-1, 1).double() for path in (student, teacher)]
    mse = (outputs[0] - outputs[1]).pow(2).flatten(1).mean(1)
    expected = sum(10 * math.log10(4 / m) for m in mse.tolist()) / 2
    assert 5 < expected < 60 and result["metrics"]["psnr"] == pytest.approx(expected, rel=1e-6)
    assert 0 < result["metrics"]["ssim"] < 1


def test_fid_defaults_to_the_frames_own_photos_and_a_teacher_of_images_is_refused(cityscapes_root, spade_models,
                                                                                   tmp_path):
    from gzoo.models import create_model

    result = api.evaluate(spade_models[0], cityscapes_root, ["fid"], store=False)
    protocol = result["protocols"]["fid"]
    assert protocol["reference"] == f"real leftImg8bit/val images of {cityscapes_root} (2)"
    assert result["metrics"]["fid"] > 0 and protocol["images"] == 2
    rgb = save_model_dir(tmp_path / "rgb", create_model("resnet_generator", ngf=4, n_blocks=1).state_dict(),
                         {"arch": "resnet_generator", "arch_args": {"ngf": 4, "n_blocks": 1}})
    with pytest.raises(GzooError, match=r"the teacher .*rgb takes 3-channel inputs and the model 36-channel ones"):
        api.evaluate(spade_models[0], cityscapes_root, ["psnr"], teacher=rgb, store=False)


def test_miou_scores_the_generated_photos_against_the_label_maps_as_train_ids(cityscapes_root, spade_models):
    from test_miou import independent_miou

    frames = sorted((cityscapes_root / "gtFine" / "val" / "frankfurt").glob("*_labelIds.png"))
    targets = np.stack([to_train_ids(torch.from_numpy(np.asarray(Image.open(p), dtype=np.int64))).numpy()
                        for p in frames])
    predicted = np.where(targets == 255, 0, targets)
    predicted[:, :100, :300] = 13  # a car where there is none, at the labels' own size
    seen = []

    def segmenter(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        seen.append((tuple(images.shape), size, images.dtype))
        return torch.from_numpy(predicted[:len(images)])

    result = api.evaluate(spade_models[0], cityscapes_root, ["miou"], segmenter=segmenter, store=False)
    assert seen == [((2, 3, 256, 512), (HEIGHT, WIDTH), torch.uint8)]
    expected = independent_miou(predicted, targets, 19)
    assert 20 < expected < 100 and result["metrics"]["miou"] == pytest.approx(expected, rel=1e-9)
    assert "as train ids (cityscapesScripts labels.py)" in result["protocols"]["miou"]["labels"]


def test_the_held_out_scorer_takes_the_held_out_label_maps_as_train_ids(cityscapes_root, spade_models):
    from test_miou import independent_miou

    from gzoo.evaluation import HeldOutScorer

    settings = _settings(cityscapes_root)
    splits = find_splits(settings, cityscapes_root)
    inputs, names = held_out_inputs(settings, splits, 512)
    targets = np.stack([to_train_ids(torch.from_numpy(np.asarray(Image.open(p), dtype=np.int64))).numpy()
                        for p in splits.held_out])
    predicted = np.where(targets == 255, 0, targets)
    predicted[1, 200:, :] = 2  # building over the lower half of the second frame
    predictions = iter(torch.from_numpy(predicted[i:i + 1]) for i in range(2))
    scorer = HeldOutScorer("miou", inputs, names, 1, segmenter=lambda images, size: next(predictions),
                           label_maps=list(splits.held_out))
    score = scorer(load_model_dir(spade_models[0]))
    expected = independent_miou(predicted, targets, 19)
    assert 20 < expected < 100 and score == pytest.approx(-expected, rel=1e-9)


def test_a_label_map_generator_refuses_a_folder_of_images_in_one_line(cityscapes_root, spade_models, gzoo_main):
    code, _, stderr = gzoo_main("eval", str(spade_models[0]), "--data",
                                str(cityscapes_root / "leftImg8bit" / "val" / "frankfurt"), "--no-store")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "takes Cityscapes label maps (36 channels), but" in stderr and "give --data a Cityscapes root" in stderr
    code, _, stderr = gzoo_main("eval", str(spade_models[0]), "--data", str(cityscapes_root), "--split", "test",
                                "--no-store")
    assert code == 2 and "gtFine/test: no such folder" in stderr and "its splits: train, val" in stderr


def _export_spade(run, results: dict) -> Exported:
    model = cat_inception_spade_generator(ngf=4)
    return Exported("cat_inception_spade_generator", {"ngf": 4}, model.state_dict(), (256, 512))


@pytest.fixture
def spade_method():
    """A method that only exports a tiny GauGAN student: what the pipeline does around a label-map student."""
    method = register_method(Method(name="toy-gaugan", teachers=(), stages=lambda recipe: ["export"],
                                    run={"export": _export_spade}))
    yield method
    del method_registry.METHODS[method.name]


def test_the_pipeline_exports_a_36_channel_student_and_evaluates_it_on_a_cityscapes_held_out_copy(
        cityscapes_root, spade_models, spade_method, tmp_path):
    recipe_file = tmp_path / "gaugan.yaml"
    recipe_file.write_text(yaml.safe_dump({
        "method": "toy-gaugan", "task": "cityscapes", "teacher": str(spade_models[1]),
        "data": {"root": str(cityscapes_root), "layout": "cityscapes", "load_size": 512, "crop_size": 512,
                 "held_out_fraction": 0.34},
        "training": {"batch_size": 1, "threads": 1}, "evaluate": {"metrics": ["psnr"]}}))
    # The mIoU of cityscapes data needs no evaluate.labels: the data brings its label maps.
    miou = ["evaluate.metrics=[miou]", "evaluate.segmenter=drn-d-105_ms_cityscapes.pth"]
    assert load_recipe(recipe_file, miou).evaluate.labels is None
    with pytest.raises(GzooError, match="evaluating miou needs 'evaluate.segmenter' and 'evaluate.labels'"):
        load_recipe(recipe_file, [*miou, "data.layout=paired"])
    summary = compress(load_recipe(recipe_file), tmp_path / "run", lambda: spade_models[1])
    assert read_config(Path(summary["student"]))["input"] == {"channels": 36, "height": 256, "width": 512}
    assert summary["macs_input"] == "256x512" and 0 < summary["student_macs_paper"] == summary["teacher_macs_paper"]
    assert "identity_psnr" not in summary and 5 < summary["metrics"]["psnr"] < 60
    copied = sorted(p.relative_to(tmp_path / "run" / "held_out").as_posix()
                    for p in (tmp_path / "run" / "held_out").rglob("*.png"))
    assert copied == sorted(f"{kind}/train/{stem.split('_')[0]}/{stem}_{suffix}.png"
                            for kind, suffix in (("gtFine", "gtFine_instanceIds"), ("gtFine", "gtFine_labelIds"),
                                                 ("leftImg8bit", "leftImg8bit"))
                            for stem in ("aachen_000000_000019", "bremen_000000_000019"))
