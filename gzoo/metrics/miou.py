"""Mean intersection over union of a segmenter's predictions on generated images, Cityscapes-style.

The protocol is GAN Compression's (metric/cityscapes_mIoU.py, which every compressed-GAN paper here reports):

- the segmenter is DRN-D-105 with the DRN repository's released Cityscapes weights
  (``drn-d-105_ms_cityscapes.pth``, http://go.yf.io/drn-cityscapes-models), 19 train-id classes;
- it sees the generated images at the generator's own resolution (256x256 for pix2pix, 512x256 for GauGAN),
  quantised to uint8, scaled to [0, 1] and normalised with the Cityscapes mean/std of DRN's
  datasets/cityscapes/info.json (not ImageNet's);
- its per-pixel log-probabilities are resized bilinearly to the ground truth's size (gtFine ``*_trainIds.png``,
  2048x1024) and the arg-max is the prediction;
- one confusion matrix is summed over the whole set (``fast_hist``); IoU per class is
  ``diag / (row sum + column sum - diag)`` (``per_class_iu``) and the mean skips classes whose union is empty,
  which give 0/0 = NaN there (``np.nanmean``); the original rounds the mean to 2 decimals, gzoo keeps it whole.

Target pixels of ``ignore_index`` (255, void) are skipped, as the original skips every label outside
[0, classes). Any other out-of-range label is refused here: it means label ids (0..33) were given for train ids.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from gzoo.errors import GzooError
from gzoo.models.drn import drn_d_105_seg

CITYSCAPES_CLASSES = 19
CITYSCAPES_LABEL_SIZE = (1024, 2048)  # height, width of gtFine label maps
# DRN's datasets/cityscapes/info.json, which GAN Compression copies into its SegList.
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
DRN_WEIGHTS_HINT = ("download drn-d-105_ms_cityscapes.pth, the DRN repository's released Cityscapes model "
                    "(http://go.yf.io/drn-cityscapes-models, linked from https://github.com/fyu/drn)")
PROTOCOL = ("mIoU %, DRN-D-105 Cityscapes (19 train-id classes), images at the generator's size with DRN's "
            "Cityscapes mean/std, log-probabilities resized bilinearly to the label size, classes with an empty "
            "union skipped")


class Segmenter(Protocol):
    """Maps uint8 images N x 3 x h x w (as a generator's outputs are saved) to int64 class indices N x H x W.

    ``size`` is (H, W), the size of the label maps the prediction is compared with; the segmenter owns its
    normalisation and how it reaches that size.
    """

    def __call__(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor: ...


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, classes: int, ignore_index: int = 255) -> torch.Tensor:
    """classes x classes pixel counts (int64), rows the target class, columns the predicted one."""
    if pred.shape != target.shape:
        raise GzooError(f"prediction {tuple(pred.shape)} and labels {tuple(target.shape)} differ in shape")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    labelled = target != ignore_index
    pred, target = pred[labelled], target[labelled]
    bad_label, bad_pred = _outside(target, classes), _outside(pred, classes)
    if bad_label is not None:
        raise GzooError(f"label {bad_label} is outside 0..{classes - 1} and not the ignore index {ignore_index}; "
                        "give train-id label maps (Cityscapes gtFine *_trainIds.png)")
    if bad_pred is not None:
        raise GzooError(f"the segmenter predicted class {bad_pred}, outside 0..{classes - 1}; "
                        f"it must segment into the labels' {classes} classes")
    return torch.bincount(classes * target + pred, minlength=classes * classes).reshape(classes, classes)


def _outside(values: torch.Tensor, classes: int) -> int | None:
    bad = values[(values < 0) | (values >= classes)]
    return bad[0].item() if len(bad) else None


def miou(confusion: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(mean IoU %, per-class IoU % as float64 with NaN for classes absent from both prediction and target)."""
    confusion = confusion.double()
    intersection = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    if not union.any():
        raise GzooError("no labelled pixels to measure mIoU on: every label is the ignore index")
    per_class = 100 * intersection / union  # 0/0 -> NaN: a class nobody saw does not count
    return per_class.nanmean().item(), per_class


def segmentation_confusion(segmenter: Segmenter, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                           classes: int, ignore_index: int = 255) -> torch.Tensor:
    """One confusion matrix over every (uint8 images N x 3 x h x w, labels N x H x W) batch, as ``fast_hist`` sums."""
    total = torch.zeros(classes, classes, dtype=torch.int64)
    for images, labels in batches:
        total += confusion_matrix(segmenter(images, tuple(labels.shape[-2:])), labels, classes, ignore_index)
    return total


class DrnSegmenter:
    """The DRN-D-105 Cityscapes protocol as a Segmenter (see the module docstring)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()
        self.mean = torch.tensor(CITYSCAPES_MEAN)[:, None, None]
        self.std = torch.tensor(CITYSCAPES_STD)[:, None, None]

    def __call__(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        with torch.inference_mode():
            log_probs = self.model((images.float() / 255 - self.mean) / self.std)
            # Bilinear upsampling with half-pixel centres equals the original's PIL BILINEAR resize of each map.
            return F.interpolate(log_probs, size=size, mode="bilinear", align_corners=False).argmax(1)


def load_segmenter(weights_path: str | Path, classes: int = CITYSCAPES_CLASSES) -> DrnSegmenter:
    """DRN-D-105 with the weights of a DRNSeg state dict (the released ``drn-d-105_ms_cityscapes.pth``)."""
    path = Path(weights_path)
    if not path.is_file():
        raise GzooError(f"{path}: no such segmenter checkpoint; {DRN_WEIGHTS_HINT}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that is not a plain state dict, or not a checkpoint at all
        raise GzooError(f"{path}: not a loadable PyTorch state dict ({err}); {DRN_WEIGHTS_HINT}") from err
    model = drn_d_105_seg(classes)
    _check_keys(path, state, model.state_dict())
    model.load_state_dict(state, strict=False)  # keys checked above, bar the BN counters old checkpoints lack
    return DrnSegmenter(model)


def _check_keys(path: Path, state: object, expected: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint that is not exactly DRNSeg's state dict, naming the first key at fault."""
    if not isinstance(state, dict):
        raise GzooError(f"{path}: holds a {type(state).__name__}, not a state dict; {DRN_WEIGHTS_HINT}")
    for key, value in state.items():
        if key not in expected:
            raise GzooError(f"{path}: unexpected key {key!r} for drn_d_105_seg (its keys look like "
                            f"'base.0.0.weight', 'seg.weight', 'up.weight'); {DRN_WEIGHTS_HINT}")
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise GzooError(f"{path}: key {key!r} holds {found}, drn_d_105_seg expects "
                            f"{tuple(expected[key].shape)} (a checkpoint for another number of classes?)")
    # PyTorch before 0.4 saved no BN batch counters; evaluation never reads them.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise GzooError(f"{path}: missing key {missing[0]!r} of drn_d_105_seg ({len(missing)} missing); "
                        f"{DRN_WEIGHTS_HINT}")
