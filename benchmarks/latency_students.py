"""CPU speed-up of every compressed student over its teacher, beside its MAC reduction, in one run.

Teacher and student are timed in alternating turns in this one process (batch 1), so both see the same
machine state; the ratio of their medians is the speed-up. Every pair is timed in eager PyTorch; one pair
(``--onnx``, by default GAN Compression's horse2zebra student) is also timed with ``gzoo bench`` in
both runtimes, one runtime after the other, with the latencies and peak memory beside the ratios.

    python benchmarks/latency_students.py [--method gan-compression] [--task horse2zebra] [--threads 2]
        [--rounds 5] [--onnx gan-compression/horse2zebra | --onnx '']
"""

import argparse

import onnxruntime
import torch

from gzoo import api
from gzoo.metrics import count_macs, measure_interleaved
from gzoo.zoo import load_zoo

RUNS_PER_TURN = 3
RUNTIME_NAMES = {"eager": "eager PyTorch", "onnxruntime": f"ONNX Runtime {onnxruntime.__version__}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", help="only students of this method")
    parser.add_argument("--task", help="only students of this task")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing turns per pair")
    parser.add_argument("--onnx", default="gan-compression/horse2zebra",
                        help="the student timed in ONNX Runtime too, against its teacher ('' for none)")
    args = parser.parse_args()

    zoo = load_zoo()
    students = [e for e in zoo.select(method=args.method, task=args.task)
                if e.teacher and e.method != "original" and e.measurable]
    print(f"On the CPU, {args.threads} threads, batch 1, {args.rounds} alternating turns of "
          f"1 warm-up + {RUNS_PER_TURN} timed runs; torch {torch.__version__}")
    print(f"\neager PyTorch\n{'student':40} {'teacher':34} {'MACs ÷':>8} {'speed-up':>9} {'speed-up / MACs ÷':>18}")
    for student in students:
        teacher = zoo.get(student.teacher)
        example = torch.rand(1, *student.input) * 2 - 1
        models = [api.build_model(e) for e in (teacher, student)]
        reduction = count_macs(models[0], example).macs_paper / count_macs(models[1], example).macs_paper
        timed_teacher, timed_student = measure_interleaved(models, [example, example], "eager", args.threads,
                                                           RUNS_PER_TURN * args.rounds, args.rounds)
        speedup = timed_teacher.median_ms / timed_student.median_ms
        print(f"{student.id:40} {teacher.id:34} {reduction:7.1f}x {speedup:8.1f}x {speedup / reduction:17.2f}")

    if args.onnx:
        student = zoo.get(args.onnx)
        print(f"\n{student.id} against its teacher {student.teacher}, median ms (IQR), peak memory MB")
        print(f"{'runtime':28} {'teacher ms':>18} {'student ms':>16} {'speed-up':>9} {'teacher MB':>11} "
              f"{'student MB':>11}")
        for runtime, name in RUNTIME_NAMES.items():
            result = api.bench(student.id, vs=student.teacher, runtime=runtime, threads=args.threads,
                               runs=RUNS_PER_TURN * args.rounds, zoo=zoo)
            timed_student, timed_teacher = result["models"]
            cells = [f"{m['median_ms']:9.1f} ({m['iqr_ms']:5.1f})" for m in (timed_teacher, timed_student)]
            memory = [f"{m['peak_memory_mb']:11.1f}" for m in (timed_teacher, timed_student)]
            print(f"{name:28} {cells[0]:>18} {cells[1]:>16} {result['ratio']:8.1f}x {memory[0]} {memory[1]}")
        print(f"CPU: {result['cpu']}")


if __name__ == "__main__":
    main()
