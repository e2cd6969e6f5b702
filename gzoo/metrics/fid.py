"""FID and KID with torch-fidelity's standard Inception, from 2048-d features that can be cached per folder.

torch-fidelity computes the features (uint8 images in, its TF-compatible bilinear resize to 299 inside) and
the metrics (its own FID and KID functions); gzoo adds the offline weights (gzoo.metrics.inception), a
feature cache keyed by folder content, and GAN Compression's .npz reference statistics.
"""

import hashlib
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import numpy as np
import torch

from gzoo.errors import GzooError
from gzoo.paths import gzoo_home

FEATURE_LAYER = "2048"
PROTOCOL = "torch-fidelity inception-v3-compat pool3 (2048-d), uint8 input resized to 299 bilinear inside"
KID_SUBSETS = 100  # torch-fidelity's defaults
KID_SUBSET_SIZE = 1000
KID_SEED = 2020

Statistics = dict[str, np.ndarray]  # {"mu": (2048,), "sigma": (2048, 2048)}, float64
Progress = Callable[[int], None]  # called with the number of images just processed


def extract_features(extractor: torch.nn.Module, batches: Iterable[torch.Tensor],
                     progress: Progress | None = None) -> torch.Tensor:
    """N x 2048 float32 pool3 features of uint8 N x 3 x H x W batches."""
    features = []
    with torch.inference_mode():
        for batch in batches:
            features.append(extractor(batch)[0].cpu())
            if progress:
                progress(len(batch))
    return torch.cat(features)


def statistics(features: torch.Tensor) -> Statistics:
    """Mean and covariance of the features, in float64 (as torch-fidelity and GAN Compression's .npz hold them)."""
    array = features.double().numpy()
    return {"mu": array.mean(axis=0), "sigma": np.cov(array, rowvar=False)}


def fid(stats_a: Statistics, stats_b: Statistics) -> float:
    """Fréchet Inception Distance between two feature distributions (torch-fidelity's formula)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return fid_statistics_to_metric(stats_a, stats_b, verbose=False)[KEY_METRIC_FID]


def kid(features_a: torch.Tensor, features_b: torch.Tensor, subset_size: int | None = None,
        subsets: int = KID_SUBSETS, seed: int = KID_SEED) -> tuple[float, float, int]:
    """Kernel Inception Distance (mean, std over subsets) and the subset size used.

    The default subset size is torch-fidelity's 1000, or the smaller set's size when a set has fewer images;
    a subset size asked for explicitly must fit both sets.
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    smaller = min(len(features_a), len(features_b))
    if subset_size is None:
        subset_size = min(KID_SUBSET_SIZE, smaller)
    if not 2 <= subset_size <= smaller:
        raise GzooError(f"KID subset size {subset_size} does not fit sets of {len(features_a)} and "
                        f"{len(features_b)} images; use --kid-subset-size between 2 and {smaller}")
    if subsets < 1:
        raise GzooError(f"KID subsets must be at least 1, not {subsets}")
    out = kid_features_to_metric(features_a, features_b, kid_subsets=subsets, kid_subset_size=subset_size,
                                 rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD], subset_size


def load_npz_statistics(path: str | Path) -> Statistics:
    """Reference statistics saved as GAN Compression does: an .npz with ``mu`` (2048,) and ``sigma`` (2048, 2048)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("mu", "sigma") if key not in data.files]
            if missing:
                raise GzooError(f"{path}: no {' or '.join(missing)} array (it has {', '.join(data.files) or 'none'}); "
                                "give an .npz of FID reference statistics with mu and sigma")
            stats = {"mu": data["mu"].astype(np.float64), "sigma": data["sigma"].astype(np.float64)}
    except (OSError, ValueError) as err:
        raise GzooError(f"{path}: not a readable .npz file ({err}); give an .npz with mu and sigma") from None
    width = stats["mu"].shape[0] if stats["mu"].ndim == 1 else None
    if width is None or stats["sigma"].shape != (width, width):
        raise GzooError(f"{path}: mu {stats['mu'].shape} and sigma {stats['sigma'].shape} are not a mean vector "
                        "and its covariance")
    return stats


class FeatureCache:
    """Features of image folders, stored under GZOO_HOME by (folder content, Inception weights) hash.

    The key hashes every image's bytes, so a folder that changed is never served stale features.
    """

    def __init__(self, weights_path: Path) -> None:
        self.folder = gzoo_home() / "fid-features"
        self.weights_sha256 = _file_sha256(weights_path)

    def path(self, content_hash: str, variant: str) -> Path:
        key = hashlib.sha256(f"{content_hash} {variant} {self.weights_sha256} {FEATURE_LAYER}".encode()).hexdigest()
        return self.folder / f"{key[:32]}.npy"

    def get_or_compute(self, content_hash: str, variant: str, count: int,
                       compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """The features of ``count`` images whose bytes hash to ``content_hash``, read as ``variant`` says
        (e.g. "as stored", "resized to 256x256"); computed and stored when not cached. Also says if cached."""
        path = self.path(content_hash, variant)
        try:
            features = torch.from_numpy(np.load(path, allow_pickle=False))
            if len(features) == count:
                return features, True
        except (OSError, ValueError):
            pass  # not cached yet (or unreadable): compute again
        features = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.stem}.{os.getpid()}.npy")
        np.save(staging, features.numpy())
        os.replace(staging, path)  # readers see no file or a whole one
        return features, False


class InceptionFeatures:
    """torch-fidelity's Inception from local weights, built on first use, with a feature cache beside it."""

    def __init__(self, weights_path: Path) -> None:
        self.weights_path = weights_path
        self.cache = FeatureCache(weights_path)
        self._extractor: torch.nn.Module | None = None

    def extract(self, batches: Iterable[torch.Tensor], progress: Progress | None = None) -> torch.Tensor:
        if self._extractor is None:
            from gzoo.metrics.inception import load_extractor

            self._extractor = load_extractor(self.weights_path).eval()
        return extract_features(self._extractor, batches, progress)

    def cached(self, content_hash: str, variant: str, count: int, batches: Callable[[], Iterable[torch.Tensor]],
               progress: Progress | None = None) -> tuple[torch.Tensor, bool]:
        """Features of a set of images known by its content hash; ``batches`` is only called on a cache miss."""
        return self.cache.get_or_compute(content_hash, variant, count, lambda: self.extract(batches(), progress))


@cache
def _file_sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
