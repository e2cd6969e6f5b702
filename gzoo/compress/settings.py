"""The recipe sections every method shares: where the data is, how long a training stage runs, what the exported
student is evaluated on. A method's own sections are dataclasses in its file, validated the same way."""

from dataclasses import dataclass, field

LAYOUTS = ("paired", "unpaired", "single", "classes", "cityscapes")


@dataclass(frozen=True)
class DataSettings:
    """Where the images are and how training crops are cut (the originals' load_size / crop_size / flip).

    Layouts: ``paired`` root/train holds A|B images side by side (pix2pix); ``unpaired`` root/trainA and
    root/trainB (CycleGAN); ``single`` root/train holds inputs only (the teacher's outputs are the targets).
    ``classes`` root/train holds class folders of inputs (ImageNet's layout; the labels are not read: a
    classifier is distilled from its teacher). ``cityscapes`` is the original Cityscapes folder as SPADE's and
    CAT's ``--dataset_mode cityscapes`` reads it (GauGAN): root/gtFine/train/<city>/*_gtFine_labelIds.png and
    *_gtFine_instanceIds.png with root/leftImg8bit/train/<city>/*_leftImg8bit.png, paired by <city>_<seq>_<frame>;
    the inputs are the one-hot label maps with instance edges (36 channels at 256x512), the targets the photos;
    meta files name label maps (``aachen_000000_000019_gtFine_labelIds.png``). Its preprocessing is the original's
    scale_width: give load_size 512 and crop_size 512 (a larger load_size crops crop_size x crop_size / 2).
    ``builtin: skimage-photos`` makes a ``single`` dataset of crops of scikit-image's photos instead of ``root``.
    """

    root: str | None = None
    builtin: str | None = None
    layout: str = "unpaired"
    direction: str = "AtoB"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    # The originals' meta files (one file name per line): which training images each stage uses. The supernet
    # trains on train_meta (train_meta_b: domain B of unpaired data); the search scores held_out_meta.
    train_meta: str | None = None
    train_meta_b: str | None = None
    held_out_meta: str | None = None
    held_out_fraction: float = 0.1  # without meta files: every n-th image (by name) is held out
    # builtin photos: training crops per photo, and held-out crops per photo (from a band no training crop
    # touches)
    crops_per_photo: int = 8
    held_out_crops_per_photo: int = 2
    photo_scale: float = 3  # builtin photos: each is scaled so its shorter side is photo_scale x load_size


@dataclass(frozen=True)
class StageSettings:
    """A training stage's length: epochs + epochs_decay over the data (the originals), or steps + steps_decay.

    The learning rate stays constant, then decays linearly to zero over the decay part; or, with ``lr_step``,
    drops by ``lr_gamma`` every ``lr_step`` steps (torch's StepLR, Bit-Goes-Down's global fine-tuning).
    """

    epochs: int | None = None
    epochs_decay: int | None = None
    steps: int | None = None
    steps_decay: int | None = None
    lr: float | None = None  # None: training.lr
    lr_step: int | None = None
    lr_gamma: float = 0.1


@dataclass(frozen=True)
class EvaluateSettings:
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim", "latency"])
    data: str = "held_out"  # held_out (the search split) or a folder gzoo eval reads
    max_images: int | None = None
    reference: str | None = None  # fid: real statistics .npz or an image folder
    segmenter: str | None = None  # miou: DRN-D-105 Cityscapes weights
    labels: str | None = None  # miou: train-id label maps named like the evaluation inputs
