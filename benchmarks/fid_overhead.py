"""gzoo's FID time against a direct torch-fidelity call on the same images, in one process.

Both compute FID between two folders of real 299x299 photo crops (half of the images each) from scratch:
gzoo with an empty feature cache, torch-fidelity with its cache off, one batch size for both, the same
Inception weights. Runs alternate (torch-fidelity, gzoo, gzoo, torch-fidelity, ...) so drift hits both.

    python benchmarks/fid_overhead.py [--images 500] [--rounds 1] [--batch-size 64]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch_fidelity
from fid_images import write_crops

from gzoo import api
from gzoo.metrics.inception import inception_weights_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images in all, split over the two folders")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gzoo-fid-bench-"))
    half = args.images // 2
    first, second = write_crops(work / "a", half), write_crops(work / "b", half, offset=half)
    weights, source = inception_weights_path()

    def direct() -> float:
        return torch_fidelity.calculate_metrics(input1=str(first), input2=str(second), fid=True, cuda=False,
                                                verbose=False, cache=False, batch_size=args.batch_size,
                                                feature_extractor_weights_path=str(weights),
                                                )["frechet_inception_distance"]

    def ours(run: int) -> float:
        os.environ["GZOO_HOME"] = str(work / f"home-{run}")  # an empty feature cache every time
        return api.fid(first, second, batch_size=args.batch_size, inception_weights=str(weights))["fid"]

    times: dict[str, list[float]] = {"torch-fidelity": [], "gzoo": []}
    values = {}
    run = 0
    for _ in range(args.rounds):
        for name in ("torch-fidelity", "gzoo", "gzoo", "torch-fidelity"):
            start = time.perf_counter()
            values[name] = direct() if name == "torch-fidelity" else ours(run)
            times[name].append(time.perf_counter() - start)
            run += 1
    theirs, mine = statistics.median(times["torch-fidelity"]), statistics.median(times["gzoo"])
    print(f"FID of {half} vs {half} real 299x299 crops, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"Inception weights: {source}")
    print(f"torch-fidelity direct  {theirs:7.1f} s  FID {values['torch-fidelity']:.4f}")
    print(f"gzoo fid (cold cache)  {mine:7.1f} s  FID {values['gzoo']:.4f}")
    print(f"gzoo / torch-fidelity  {mine / theirs:7.3f}  (overhead {100 * (mine / theirs - 1):+.1f}%)")


if __name__ == "__main__":
    main()
