"""`gzoo eval` of a student on horse2zebra's layout, cold and again with the reference's features cached.

The dataset has horse2zebra's sizes (120 testA inputs; 1,334 trainB and 140 testB real images, CycleGAN's FID
reference), made of 256x256 crops of scikit-image's photos. The student (random weights; only the timing counts)
is evaluated by FID once with an empty feature cache, then a second student of the same architecture is evaluated
on the same data: its reference features come from the cache. Both in one process, the Inception weights found
(or converted) before either timing.

    python benchmarks/eval_cache.py [--student gan-compression/horse2zebra] [--scale 1.0]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from fid_images import write_crops

from gzoo import api, machine
from gzoo.data.modeldir import save_model_dir
from gzoo.zoo import load_zoo

SPLITS = {"testA": 120, "trainB": 1334, "testB": 140}  # horse2zebra's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="gan-compression/horse2zebra", help="a zoo id (its architecture)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of horse2zebra's image counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gzoo-eval-cache-"))
    os.environ["GZOO_HOME"] = str(work / "home")
    torch.set_num_threads(args.threads)
    data, offset = work / "horse2zebra", 0
    for split, count in SPLITS.items():
        count = max(2, round(count * args.scale))
        write_crops(data / split, count, offset, size=256, steps=11)
        offset += count
    entry = load_zoo().get(args.student)
    students = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        students.append(save_model_dir(work / f"student-{seed}", api.build_model(entry).state_dict(),
                                       {"arch": entry.arch, "arch_args": entry.arch_args,
                                        "input": dict(zip(("channels", "height", "width"), entry.input, strict=True))}))
    warmup = write_crops(work / "warm-up", 2, offset, size=256, steps=11)
    api.fid(warmup, warmup)  # finds (or converts once) the Inception weights before either timing
    print(f"CPU: {machine.cpu_name()}, {args.threads} threads, torch {torch.__version__}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"data: {', '.join(f'{s} {len(list((data / s).iterdir()))}' for s in SPLITS)}; student {entry.id} "
          f"({entry.arch}, random weights)")
    timings = []
    for student in students:
        start = time.perf_counter()
        result = api.evaluate(student, data, ["fid"], store=False, threads=args.threads)
        timings.append(time.perf_counter() - start)
        print(f"{student.name}: FID {result['metrics']['fid']:.2f} against "
              f"{result['protocols']['fid']['reference']}, {timings[-1]:.1f} s")
    print(f"second evaluation, reference features cached: {timings[0] / timings[1]:.2f}x faster; load average "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
