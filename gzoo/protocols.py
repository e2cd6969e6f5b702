"""Each task's published evaluation protocol, and where `gzoo leaderboard --measure --data DIR` finds its data.

DIR holds the datasets in the originals' layouts (the README's table); a task's protocol says which folder, which
metrics and which reference the papers used, so that every entry of a task is measured the same way through
``gzoo.evaluation``. Tasks without a paper (gzoo's community entries) get gzoo's own protocol, said as such.
"""

from dataclasses import dataclass
from pathlib import Path

from gzoo.evaluation import Options

SEGMENTER = "drn-d-105_ms_cityscapes.pth"  # DRN-D-105 Cityscapes weights, at the top of DIR


@dataclass(frozen=True)
class TaskProtocol:
    folder: str  # under DIR
    metrics: tuple[str, ...]
    words: str  # the protocol, as the papers state it
    mode: str = "auto"
    direction: str = "AtoB"
    statistics: str | None = None  # FID reference statistics under DIR, used when present (else the real targets)
    labels: str | None = None  # mIoU: train-id label maps under DIR, named like the inputs


_OWN = ("gzoo's own protocol (no paper): FID of the outputs on testA against the real images of the look in "
        "trainB+testB (testB where there is no trainB)")
PROTOCOLS = {
    "horse2zebra": TaskProtocol(
        "horse2zebra", ("fid",), "FID of the 120 translated testA horses against the real train+test zebras: GAN "
        "Compression's statistics (real_stat/horse2zebra_B.npz in DIR) where present, else trainB+testB",
        mode="unpaired",
        statistics="real_stat/horse2zebra_B.npz"),
    "summer2winter": TaskProtocol("summer2winter_yosemite", ("fid",), "FID of the translated testA summer photos "
                                  "against the real winter photos of trainB+testB", mode="unpaired"),
    "edges2shoes": TaskProtocol("edges2shoes-r/val", ("fid",), "FID against the real shoes of the 200 validation "
                                "pairs (A: edges, left; B: shoes, right)", mode="paired"),
    "map2sat": TaskProtocol("maps/val", ("fid",), "FID against the real aerial photos of the 1,098 validation "
                            "pairs (B: map, right, to A: photo, left)", mode="paired", direction="BtoA"),
    "cityscapes": TaskProtocol(
        "cityscapes/val", ("miou",), f"mIoU % of DRN-D-105 ({SEGMENTER} in DIR) on the photos generated from the "
        "500 validation label maps (B, right, to A, left), 19 classes", mode="paired", direction="BtoA",
        labels="cityscapes/val_labels"),
    "imagenet": TaskProtocol("imagenet/val", ("top1", "top5"), "top-1/top-5 % on the validation images in class "
                             "folders (ImageNet index or WordNet id), resize 256, centre crop 224"),
    "vintage-photo": TaskProtocol("vintage-photo", ("fid",), _OWN, mode="unpaired"),
    "style-transfer": TaskProtocol("style-transfer", ("fid",), _OWN, mode="unpaired"),
}


def locate(task: str | None, data_root: Path) -> tuple[TaskProtocol, Path, Options] | str:
    """The protocol, data folder and evaluation options of ``task`` under ``data_root``, or why there are none."""
    protocol = PROTOCOLS.get(task or "")
    if protocol is None:
        return f"no evaluation protocol for task '{task}'"
    folder = data_root / protocol.folder
    if not folder.is_dir():
        return f"no dataset: {folder} is missing"
    statistics = data_root / protocol.statistics if protocol.statistics else None
    segmenter = labels = None
    if protocol.labels:
        segmenter, labels = data_root / SEGMENTER, data_root / protocol.labels
        if not segmenter.is_file() or not labels.is_dir():
            return f"no segmenter: mIoU needs {segmenter} and the label maps in {labels}"
    return protocol, folder, Options(
        metrics=protocol.metrics, mode=protocol.mode, direction=protocol.direction, segmenter=segmenter,
        labels=labels, reference=statistics if statistics is not None and statistics.is_file() else None)
