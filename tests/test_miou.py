"""mIoU: confusion matrix and IoU by hand, the segmentation plumbing on real photos, DRN-D-105 and its loader."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from photos import photo_crops
from PIL import Image

from gzoo.errors import GzooError
from gzoo.metrics.miou import (
    CITYSCAPES_MEAN,
    CITYSCAPES_STD,
    confusion_matrix,
    load_segmenter,
    miou,
    segmentation_confusion,
)
from gzoo.models import create_model

# --- confusion matrix and IoU -----------------------------------------------------------------------------------


def test_confusion_and_miou_by_hand():
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    target = torch.tensor([[0, 1, 2], [255, 255, 0]])  # 255: void, skipped whatever was predicted there
    confusion = confusion_matrix(pred, target, classes=4)
    assert confusion.tolist() == [[2, 0, 0, 0],  # target 0: predicted 0 twice
                                  [0, 1, 0, 0],  # target 1: predicted 1
                                  [0, 1, 0, 0],  # target 2: predicted 1
                                  [0, 0, 0, 0]]  # class 3 appears nowhere
    mean, per_class = miou(confusion)
    # IoU = tp / (tp + fp + fn): class 0 2/2, class 1 1/(1 + 1), class 2 0/1, class 3 0/0 -> skipped
    assert per_class[:3].tolist() == [100.0, 50.0, 0.0]
    assert math.isnan(per_class[3].item())
    assert mean == pytest.approx(50.0)


def test_a_class_only_predicted_counts_as_zero():
    # Class 1 is never in the target but predicted once: its union is 1, IoU 0, and it pulls the mean down.
    confusion = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]), classes=3)
    mean, per_class = miou(confusion)
    assert per_class[:2].tolist() == [pytest.approx(200 / 3), 0.0]
    assert mean == pytest.approx(100 / 3)


def test_bad_labels_are_refused():
    with pytest.raises(GzooError, match=r"label 33 is outside 0..18 .*_trainIds"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.tensor([0, 33, 255]), classes=19)
    with pytest.raises(GzooError, match="the segmenter predicted class 19, outside 0..18"):
        confusion_matrix(torch.tensor([0, 19]), torch.tensor([0, 1]), classes=19)
    with pytest.raises(GzooError, match="differ in shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), classes=19)
    with pytest.raises(GzooError, match="no labelled pixels"):
        miou(confusion_matrix(torch.zeros(4), torch.full((4,), 255), classes=19))


# --- the plumbing, with a small segmenter on real photos --------------------------------------------------------

COLOUR_CLASSES = 4  # red, green or blue dominant; dark


def colour_classes(images: torch.Tensor) -> torch.Tensor:
    """A fixed rule: the dominant channel, or class 3 where every channel is below 64."""
    classes = images.argmax(1)
    return torch.where(images.amax(1) < 64, 3, classes)


def colour_segmenter(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    classes = colour_classes(images)[:, None].float()
    return F.interpolate(classes, size=size, mode="nearest")[:, 0].long()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    crops = photo_crops(("astronaut", "coffee", "chelsea"), 96, per_photo=2)
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def independent_miou(pred: np.ndarray, target: np.ndarray, classes: int) -> float:
    """Per class: pixels in both over pixels in either, labelled pixels only; classes nobody saw skipped."""
    labelled = target != 255
    ious = []
    for c in range(classes):
        union = np.count_nonzero(((pred == c) | (target == c)) & labelled)
        if union:
            ious.append(100 * np.count_nonzero((pred == c) & (target == c) & labelled) / union)
    return float(np.mean(ious))


def test_segmenter_agreeing_with_the_labels_scores_100(photos):
    labels = colour_classes(photos)
    assert len(labels.unique()) == COLOUR_CLASSES  # the photos exercise every class
    batches = [(photos[:4], labels[:4]), (photos[4:], labels[4:])]
    mean, per_class = miou(segmentation_confusion(colour_segmenter, batches, COLOUR_CLASSES))
    assert mean == 100.0
    assert per_class.tolist() == [100.0] * COLOUR_CLASSES


def test_perturbed_labels_score_what_an_independent_count_gives(photos):
    labels = colour_classes(photos)
    perturbed = labels.clone()
    perturbed[:, :40, :40] = (perturbed[:, :40, :40] + 1) % COLOUR_CLASSES
    perturbed[:, 60:70] = 255
    # Labels at twice the photos' size: the segmenter must reach the label size (nearest, for this rule).
    perturbed = perturbed.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    batches = [(photos[i:i + 2], perturbed[i:i + 2]) for i in range(0, len(photos), 2)]
    mean, _ = miou(segmentation_confusion(colour_segmenter, batches, COLOUR_CLASSES))
    prediction = colour_classes(photos).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    expected = independent_miou(prediction.numpy(), perturbed.numpy(), COLOUR_CLASSES)
    assert 20 < expected < 95
    assert mean == pytest.approx(expected, abs=1e-9)


def test_torch_bilinear_upsampling_matches_pil_resize():
    # The original resizes each class map with PIL's BILINEAR; the DRN segmenter uses F.interpolate instead.
    maps = torch.randn(3, 8, 16, generator=torch.Generator().manual_seed(0))
    pil = np.stack([np.asarray(Image.fromarray(m.numpy(), mode="F").resize((64, 32), Image.BILINEAR))
                    for m in maps])
    ours = F.interpolate(maps[None], size=(32, 64), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(ours.numpy(), pil, atol=1e-5)


# --- DRN-D-105 --------------------------------------------------------------------------------------------------

# 54,302,915 = the base 54,288,304 + seg 512 x 19 + 19 + up 19 x 16 x 16; the same count as
# GAN Compression's DRNSeg('drn_d_105', 19) (metric/cityscapes_mIoU.py), built when this was written.
DRN_D_105_SEG_PARAMS = 54_302_915


@pytest.fixture(scope="module")
def drn() -> torch.nn.Module:
    return create_model("drn_d_105_seg").eval()


def test_drn_d_105_layout_matches_the_original_checkpoint_keys(drn):
    state = drn.state_dict()
    assert len(state) == 651
    assert list(state)[:2] == ["base.0.0.weight", "base.0.1.weight"]
    assert list(state)[-3:] == ["seg.weight", "seg.bias", "up.weight"]
    shapes = {"base.0.0.weight": (16, 3, 7, 7), "base.2.0.weight": (32, 16, 3, 3),
              "base.3.0.downsample.0.weight": (256, 32, 1, 1), "base.5.22.conv2.weight": (256, 256, 3, 3),
              "base.6.2.conv3.weight": (2048, 512, 1, 1), "base.7.0.weight": (512, 2048, 3, 3),
              "base.8.0.weight": (512, 512, 3, 3), "seg.weight": (19, 512, 1, 1), "up.weight": (19, 1, 16, 16)}
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    assert [drn.base[5][0].conv2.dilation, drn.base[6][0].conv2.dilation, drn.base[7][0].dilation] == [
        (2, 2), (4, 4), (2, 2)]
    assert sum(p.numel() for p in drn.parameters()) == DRN_D_105_SEG_PARAMS
    # With DRN's ImageNet fc (512 -> 1000) the trunk is the DRN README's "DRN-D-105 ... 54.8M".
    classifier = sum(p.numel() for p in drn.base.parameters()) + 512 * 1000 + 1000
    assert round(classifier / 1e6, 1) == 54.8
    # fill_up_weights: (1 - |i / 8 - 15 / 16|) (1 - |j / 8 - 15 / 16|), the same for every class
    up = drn.up.weight
    assert up[0, 0, 7, 7].item() == (15 / 16) ** 2 and up[0, 0, 0, 0].item() == (1 / 16) ** 2
    assert torch.equal(up[18], up[0]) and not up.requires_grad


def test_drn_d_105_forward_and_checkpoint_round_trip(drn, tmp_path):
    with torch.inference_mode():
        log_probs = drn(torch.rand(1, 3, 256, 512))
    assert log_probs.shape == (1, 19, 256, 512)
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(1, 256, 512), atol=1e-4)

    # Saved as PyTorch 0.3 saved the released model: without BN batch counters.
    state = {k: v for k, v in drn.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "drn.pth")
    segmenter = load_segmenter(tmp_path / "drn.pth")
    loaded = segmenter.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())

    images = torch.randint(0, 256, (1, 3, 64, 128), dtype=torch.uint8)
    mean, std = torch.tensor(CITYSCAPES_MEAN)[:, None, None], torch.tensor(CITYSCAPES_STD)[:, None, None]
    with torch.inference_mode():
        scores = F.interpolate(drn((images / 255 - mean) / std), size=(128, 256), mode="bilinear")
    prediction = segmenter(images, (128, 256))
    assert prediction.shape == (1, 128, 256) and prediction.dtype == torch.int64
    assert torch.equal(prediction, scores.argmax(1))


@pytest.mark.parametrize(("state", "message"), [
    ({"seg.weights": torch.zeros(1)}, "unexpected key 'seg.weights'"),
    ({"seg.weight": torch.zeros(20, 512, 1, 1)}, r"key 'seg.weight' holds \(20, 512, 1, 1\), .* \(19, 512, 1, 1\)"),
    ({}, "missing key 'base.0.0.weight' of drn_d_105_seg"),
    ([torch.zeros(1)], "holds a list, not a state dict"),
])
def test_bad_checkpoints_are_refused_naming_the_key(tmp_path, state, message):
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(GzooError, match=message):
        load_segmenter(tmp_path / "bad.pth")


def test_missing_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(GzooError, match=r"no such segmenter checkpoint; download drn-d-105_ms_cityscapes.pth.*"
                                        r"go.yf.io/drn-cityscapes-models"):
        load_segmenter(tmp_path / "drn-d-105_ms_cityscapes.pth")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(GzooError, match="not a loadable PyTorch state dict"):
        load_segmenter(tmp_path / "notes.txt")
