"""FID and KID with torch-fidelity's standard Inception, from 2048-d features that can be cached per folder.

torch-fidelity computes the features (uint8 images in, its TF-compatible bilinear resize to 299 inside) and
KID; FID is torch-fidelity's formula with the trace of the matrix square root taken through symmetric
matrices (below). gzoo adds the offline weights (gzoo.metrics.inception), a feature cache keyed by folder
content, and GAN Compression's .npz reference statistics. Comparing cached features imports neither torch
nor torch-fidelity.
"""

import hashlib
import os
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gzoo.errors import GzooError
from gzoo.paths import gzoo_home

if TYPE_CHECKING:
    import torch

FEATURE_LAYER = "2048"
PROTOCOL = "torch-fidelity inception-v3-compat pool3 (2048-d), uint8 input resized to 299 bilinear inside"
KID_SUBSETS = 100  # torch-fidelity's defaults
KID_SUBSET_SIZE = 1000
KID_SEED = 2020

# {"mu": (2048,), "sigma": (2048, 2048)}, float64; from features also "factor": (2048, k) with F F^T = sigma
Statistics = dict[str, np.ndarray]
Progress = Callable[[int], None]  # called with the number of images just processed


def extract_features(extractor: "torch.nn.Module", batches: Iterable["torch.Tensor"],
                     progress: Progress | None = None) -> "torch.Tensor":
    """N x 2048 float32 pool3 features of uint8 N x 3 x H x W batches."""
    import torch

    features = []
    with torch.inference_mode():
        for batch in batches:
            features.append(extractor(batch)[0].cpu())
            if progress:
                progress(len(batch))
    return torch.cat(features)


def statistics(features: Any) -> Statistics:
    """Mean and covariance of N x d features (a tensor or an array), in float64 (as torch-fidelity and GAN
    Compression's .npz hold them). With fewer images than features, also the covariance's factor: the centred
    features over sqrt(N - 1), which makes the FID formula cheap (see :func:`trace_sqrt_product`)."""
    array = np.asarray(features, dtype=np.float64)
    if len(array) < 2:
        raise GzooError(f"FID needs at least 2 images per set to estimate a covariance, not {len(array)}; "
                        "give more images")
    stats = {"mu": array.mean(axis=0), "sigma": np.cov(array, rowvar=False)}
    if len(array) - 1 < array.shape[1]:
        stats["factor"] = (array - stats["mu"]).T / np.sqrt(len(array) - 1)
    return stats


def covariance_factor(stats: Statistics) -> np.ndarray:
    """F with F F^T = sigma: the stored factor, else sigma's eigenvectors of numerically positive eigenvalues,
    each scaled by the root of its eigenvalue (symmetric eigendecomposition)."""
    if "factor" in stats:
        return stats["factor"]
    values, vectors = np.linalg.eigh(stats["sigma"])
    positive = values > values.max() * len(values) * np.finfo(values.dtype).eps
    return vectors[:, positive] * np.sqrt(values[positive])


def trace_sqrt_product(stats_a: Statistics, stats_b: Statistics) -> float:
    """tr sqrt(sigma_a sigma_b), the term of FID that torch-fidelity takes from eigvals of the non-symmetric
    product, through symmetric matrices only.

    With sigma_a = F F^T, the product's non-zero eigenvalues are those of the symmetric positive semi-definite
    F^T sigma_b F (with F = sqrt(sigma_a), the matrix sqrt(sigma_a) sigma_b sqrt(sigma_a)); the trace is the sum of
    their roots. F has one column per image when the features are at hand, so 100 + 100 images need one
    100 x 100 eigendecomposition instead of a 2048 x 2048 one.
    """
    if "factor" not in stats_a and "factor" in stats_b:
        stats_a, stats_b = stats_b, stats_a  # tr sqrt(AB) = tr sqrt(BA): the same eigenvalues
    factor = covariance_factor(stats_a)
    eigenvalues = np.linalg.eigvalsh(factor.T @ stats_b["sigma"] @ factor)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())  # rounding can leave tiny negative ones


def fid(stats_a: Statistics, stats_b: Statistics) -> float:
    """Fréchet Inception Distance between two feature distributions (torch-fidelity's formula)."""
    diff = stats_a["mu"] - stats_b["mu"]
    return float(diff.dot(diff) + np.trace(stats_a["sigma"]) + np.trace(stats_b["sigma"])
                 - 2 * trace_sqrt_product(stats_a, stats_b))


def kid(features_a: Any, features_b: Any, subset_size: int | None = None,
        subsets: int = KID_SUBSETS, seed: int = KID_SEED) -> tuple[float, float, int]:
    """Kernel Inception Distance (mean, std over subsets) and the subset size used.

    The default subset size is torch-fidelity's 1000, or the smaller set's size when a set has fewer images;
    a subset size asked for explicitly must fit both sets.
    """
    smaller = min(len(features_a), len(features_b))
    if subset_size is None:
        subset_size = min(KID_SUBSET_SIZE, smaller)
    if not 2 <= subset_size <= smaller:
        raise GzooError(f"KID subset size {subset_size} does not fit sets of {len(features_a)} and "
                        f"{len(features_b)} images; use --kid-subset-size between 2 and {smaller}")
    if subsets < 1:
        raise GzooError(f"KID subsets must be at least 1, not {subsets}")
    import torch
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    out = kid_features_to_metric(torch.as_tensor(features_a), torch.as_tensor(features_b), kid_subsets=subsets,
                                 kid_subset_size=subset_size, rng_seed=seed, verbose=False)
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
                       compute: Callable[[], Any]) -> tuple[np.ndarray, bool]:
        """The N x 2048 float32 features of ``count`` images whose bytes hash to ``content_hash``, read as
        ``variant`` says (e.g. "as stored", "resized to 256x256"); computed and stored when not cached. Also says
        if cached."""
        path = self.path(content_hash, variant)
        try:
            features = np.load(path, allow_pickle=False)
            if len(features) == count:
                return features, True
        except (OSError, ValueError):
            pass  # not cached yet (or unreadable): compute again
        features = np.asarray(compute())
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.stem}.{os.getpid()}.npy")
        np.save(staging, features)
        os.replace(staging, path)  # readers see no file or a whole one
        return features, False


class InceptionFeatures:
    """torch-fidelity's Inception from local weights, built on first use, with a feature cache beside it."""

    def __init__(self, weights_path: Path) -> None:
        self.weights_path = weights_path
        self.cache = FeatureCache(weights_path)
        self._extractor: torch.nn.Module | None = None

    def extract(self, batches: Iterable["torch.Tensor"], progress: Progress | None = None) -> "torch.Tensor":
        if self._extractor is None:
            from gzoo.metrics.inception import load_extractor

            self._extractor = load_extractor(self.weights_path).eval()
        return extract_features(self._extractor, batches, progress)

    def cached(self, content_hash: str, variant: str, count: int, batches: Callable[[], Iterable["torch.Tensor"]],
               progress: Progress | None = None) -> tuple[np.ndarray, bool]:
        """Features of a set of images known by its content hash, and whether they came from the cache; ``batches``
        is only called on a miss. ``progress`` counts the images either way."""
        features, cached = self.cache.get_or_compute(content_hash, variant, count,
                                                     lambda: self.extract(batches(), progress))
        if cached and progress:
            progress(count)
        return features, cached

    def folder(self, folder: Any, batch_size: int, progress: Progress | None = None) -> tuple[np.ndarray, bool]:
        """Features of an image folder's images as stored (a ``gzoo.data.ImageFolder``), cached by their bytes."""
        return self.cached(folder.content_hash(), "as stored", len(folder), lambda: folder.batches(batch_size),
                           progress)


@cache
def _file_sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
