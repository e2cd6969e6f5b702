"""How long CAT's one-step pruning of the ngf-64 inception teacher takes here, beside its baseline: one count of
the same teacher's MACs by gzoo's counter on the meta device, timed in this process.

The paper reports 4 to 8 GPU-seconds for the original, which counts every candidate's MACs by profiling a
network; gzoo counts a candidate from its widths alone. The teacher's norm scales are drawn at random (spread
and signed, as a trained teacher's; a fresh one's are all 1). The load average is printed beside the times.

    python benchmarks/cat_prune.py [--size 256] [--repeats 3]
"""

import argparse
import os
import time

import torch
from torch import nn

from gzoo.compress.cat import macs_paper, prune_to_target
from gzoo.metrics import count_macs
from gzoo.models.cat import cat_inception_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher = cat_inception_generator(ngf=64).eval()
    with torch.no_grad():
        for module in teacher.modules():
            if isinstance(module, nn.InstanceNorm2d) and module.weight is not None:
                module.weight.uniform_(-1.5, 1.5)
    size = (args.size, args.size)
    with torch.device("meta"):
        model, example = cat_inception_generator(ngf=64), torch.zeros(1, 3, *size)
        count_macs(model, example)  # the first count warms the dispatcher up
        started = time.perf_counter()
        counted = count_macs(model, example).macs_paper
        baseline = time.perf_counter() - started
    teacher_macs = macs_paper(teacher.widths, *size, "instance_affine")
    assert counted == teacher_macs
    print(f"load average {os.getloadavg()[0]:.2f}; teacher {teacher_macs / 1e9:.2f}G paper MACs at "
          f"{args.size}x{args.size}; one meta-device count of it: {baseline:.3f} s")
    print(f"{'target':>8} {'MACs':>8} {'iterations':>10} {'seconds':>8} {'÷ one count':>11}")
    for fraction in (0.05, 0.1, 0.3):
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            pruned = prune_to_target(teacher, fraction * teacher_macs, size)
            times.append(time.perf_counter() - started)
        best = min(times)
        print(f"{fraction:8.0%} {pruned.macs_paper / 1e9:7.3f}G {pruned.iterations:10d} {best:8.3f} "
              f"{best / baseline:11.3f}")


if __name__ == "__main__":
    main()
