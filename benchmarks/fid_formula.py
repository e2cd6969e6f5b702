"""The FID formula, torch-fidelity's (eigvals of the non-symmetric sigma1 sigma2) against gzoo's (symmetric
eigendecompositions), in one process; then a whole `gzoo fid` of two folders whose features are cached.

Both folders hold real 299x299 photo crops (100 + 100 by default). The first run computes and caches their
Inception features (minutes on a CPU); `--work DIR` keeps them for the next run. Timings are medians of
`--runs` runs; the load average is printed beside them, since other jobs on the machine slow every number.

    python benchmarks/fid_formula.py [--images 100] [--runs 5] [--work DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fid_images import write_crops

from gzoo import api
from gzoo.data import scan_image_folder
from gzoo.metrics import fid as fidlib
from gzoo.metrics.inception import inception_weights_path


def median_seconds(work: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images per folder")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each")
    parser.add_argument("--work", type=Path, help="folder for the images and the feature cache (kept)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gzoo-fid-formula-"))
    os.environ["GZOO_HOME"] = str(work / "home")
    n = args.images
    folders = [work / f"real-{n}-a", work / f"real-{n}-b"]
    for offset, folder in enumerate(folders):
        if not folder.is_dir():
            write_crops(folder, n, offset=offset * n)
    print(f"{load()}; features of {n} + {n} real 299x299 crops (computed once, then cached) ...", flush=True)
    api.fid(*folders)
    inception = fidlib.InceptionFeatures(inception_weights_path()[0])
    features = []
    for folder in map(scan_image_folder, folders):
        cached, _ = inception.cached(folder.content_hash(), "as stored", len(folder),
                                     lambda: sys.exit("the features were not cached"))
        features.append(cached)

    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    def old() -> float:  # what gzoo did before: mean and covariance, then torch-fidelity's formula
        stats = [{"mu": f.astype(np.float64).mean(axis=0), "sigma": np.cov(f.astype(np.float64), rowvar=False)}
                 for f in features]
        return fid_statistics_to_metric(stats[0], stats[1], False)[KEY_METRIC_FID]

    def new() -> float:
        return fidlib.fid(*[fidlib.statistics(f) for f in features])

    plain = [{k: s[k] for k in ("mu", "sigma")} for s in map(fidlib.statistics, features)]

    def new_statistics_only() -> float:  # an .npz reference: no features, so a 2048 x 2048 eigendecomposition
        return fidlib.fid(*plain)

    old_s, old_fid = median_seconds(old, args.runs)
    new_s, new_fid = median_seconds(new, args.runs)
    npz_s, npz_fid = median_seconds(new_statistics_only, args.runs)
    print(f"formula, torch-fidelity (eigvals of sigma1 sigma2)     {old_s:7.3f} s  FID {old_fid:.6f}")
    print(f"formula, gzoo from features (100 x 100 eigvalsh)       {new_s:7.3f} s  FID {new_fid:.6f}  "
          f"{old_s / new_s:6.1f}x faster, relative difference {(new_fid - old_fid) / old_fid:+.1e}")
    print(f"formula, gzoo from statistics only (2048 x 2048 eigh)  {npz_s:7.3f} s  FID {npz_fid:.6f}  "
          f"{old_s / npz_s:6.1f}x faster, relative difference {(npz_fid - old_fid) / old_fid:+.1e}")

    command = [sys.executable, "-m", "gzoo", "fid", *map(str, folders), "--json"]

    def cli() -> dict:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    cli_s, result = median_seconds(cli, args.runs)
    cached = all(side["features_cached"] for side in result["inputs"])
    print(f"gzoo fid, {n} + {n} images, features cached: {cached}, median of {args.runs} runs {cli_s:.2f} s "
          f"(FID {result['fid']:.4f}); {load()}")


if __name__ == "__main__":
    main()
