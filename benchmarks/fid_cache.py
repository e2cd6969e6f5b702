"""A second FID against the same real folder: its cached features against computing them again.

The first comparison computes the features of both folders (generated, real); the second compares a new
folder of generated images with the same real folder, whose features come from the cache. Both use
100 + 100 real 299x299 photo crops and one process.

    python benchmarks/fid_cache.py [--images 100]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from fid_images import write_crops

from gzoo import api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images per folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gzoo-fid-cache-"))
    os.environ["GZOO_HOME"] = str(work / "home")
    n = args.images
    real = write_crops(work / "real", n)
    generated = [write_crops(work / f"generated-{i}", n, offset=n * (i + 1)) for i in range(2)]
    warmup = write_crops(work / "warm-up", 2, offset=n * 3)
    api.fid(warmup, warmup)  # finds (or converts once) the Inception weights before either timing
    timings = []
    for folder in generated:
        start = time.perf_counter()
        result = api.fid(folder, real)
        timings.append(time.perf_counter() - start)
        cached = [side["features_cached"] for side in result["inputs"]]
        print(f"{folder.name}: FID {result['fid']:.3f}, features cached (generated, real): {cached}, "
              f"{timings[-1]:.1f} s")
    print(f"second evaluation against the same {n} real images: {timings[0] / timings[1]:.2f}x faster")


if __name__ == "__main__":
    main()
