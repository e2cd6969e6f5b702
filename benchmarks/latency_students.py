"""CPU speed-up of every compressed student over its teacher, beside its MAC reduction, in one run.

Teacher and student are timed in alternating rounds in this one process (eager PyTorch, batch 1), so
both see the same machine state; the ratio of their medians is the speed-up.

    python benchmarks/latency_students.py [--method gan-compression] [--threads 2] [--rounds 5]
"""

import argparse
import statistics

import torch

from gzoo import api
from gzoo.metrics import count_macs, measure_latency
from gzoo.zoo import load_zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", help="only students of this method")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per pair")
    args = parser.parse_args()

    zoo = load_zoo()
    students = [e for e in zoo.select(method=args.method) if e.teacher and e.method != "original" and e.measurable]
    print(f"eager PyTorch, CPU, batch 1, {args.threads} threads, {args.rounds} alternating rounds "
          f"of 3 timed runs; torch {torch.__version__}")
    print(f"{'student':40} {'teacher':34} {'MACs ÷':>8} {'speed-up':>9} {'speed-up / MACs ÷':>18}")
    for student in students:
        teacher = zoo.get(student.teacher)
        models = {e.id: api.build_model(e) for e in (teacher, student)}
        example = torch.rand(1, *student.input) * 2 - 1
        macs = {i: count_macs(m, example).macs_paper for i, m in models.items()}
        times: dict[str, list[float]] = {i: [] for i in models}
        for _ in range(args.rounds):
            for model_id, model in models.items():
                latency = measure_latency(model, example, warmup=1, runs=3, threads=args.threads)
                times[model_id].append(latency.median_ms)
        speedup = statistics.median(times[teacher.id]) / statistics.median(times[student.id])
        reduction = macs[teacher.id] / macs[student.id]
        print(f"{student.id:40} {teacher.id:34} {reduction:7.1f}x {speedup:8.1f}x {speedup / reduction:17.2f}")


if __name__ == "__main__":
    main()
