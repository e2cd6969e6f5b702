"""Training steps per second of GAN Compression's stages and of OMGD's step at batch 4, 256x256 (issue: supernet
training speed; OMGD's three generators and a discriminator against one distillation step).

Baseline: a distillation step of the fixed-width mobile student (ngf 64); measured: a supernet step (ngf 64,
search space channels-64-cyclegan, one sampled config per step), both against the CycleGAN ResNet-9 teacher
(random weights: speed does not depend on them), and one OMGD step with the edges2shoes ResNet script's networks
(mobile ResNet student ngf 16, wide teacher ngf 64 and deep teacher ngf 16 trained online, shared discriminator
ndf 128, channel distillation; VGG16 features when torch's hub cache has them, else the offline Inception
trunk), on crops of scikit-image's photos, in one process.

    python benchmarks/train_step.py [--steps 6] [--size 256] [--batch 4]

The first step of each stage (allocation, warm-up) is left out of the rate.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from gzoo.compress.perceptual import vgg16_weights_file
from gzoo.compress.pipeline import open_run
from gzoo.compress.recipe import load_recipe
from gzoo.data.modeldir import save_model_dir
from gzoo.models import create_model


def steps_per_second(log: Path, stage: str) -> float:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows = [r for r in rows if r["stage"] == stage]
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["seconds"] - rows[0]["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        teacher = scratch / "teacher"
        save_model_dir(teacher, create_model("resnet_generator", ngf=64).state_dict(),
                       {"arch": "resnet_generator", "arch_args": {"ngf": 64}})
        recipe_file = scratch / "recipe.yaml"
        recipe_file.write_text(yaml.safe_dump({
            "method": "gan-compression", "task": "benchmark", "teacher": str(teacher),
            "data": {"builtin": "skimage-photos", "load_size": args.size, "crop_size": args.size, "crops_per_photo": 2},
            "student": {"ngf": 64, "search_space": "channels-64-cyclegan"},
            "training": {"batch_size": args.batch, "log_every": 1, "checkpoint_every": 10**6},
            "stages": {"distill": {"steps": args.steps}, "supernet": {"steps": args.steps},
                       "search": {"budget": 1e12, "metric": "psnr"}},
        }))
        run = open_run(load_recipe(recipe_file), scratch / "run", lambda: teacher)
        started = time.perf_counter()
        results = {"distill": run.method.run["distill"](run, {})}
        run.method.run["supernet"](run, results)
        omgd_file = scratch / "omgd.yaml"
        features = "vgg16" if vgg16_weights_file().is_file() else "inception"
        omgd_file.write_text(yaml.safe_dump({
            "method": "omgd", "task": "benchmark", "teacher": str(teacher),
            "data": {"builtin": "skimage-photos", "load_size": args.size, "crop_size": args.size, "crops_per_photo": 2},
            "student": {"family": "resnet", "ngf": 16}, "teachers": {"wide_ngf": 64, "deep_ngf": 16},
            "training": {"batch_size": args.batch, "log_every": 1, "checkpoint_every": 10**6, "ndf": 128,
                         "n_share": 3, "lambda_cd": 100.0, "perceptual": features},
            "stages": {"distill": {"steps": args.steps}},
        }))
        omgd_run = open_run(load_recipe(omgd_file), scratch / "omgd-run", lambda: teacher)
        omgd_run.method.run["distill"](omgd_run, {})
        total = time.perf_counter() - started
        baseline, supernet = steps_per_second(run.log_file, "distill"), steps_per_second(run.log_file, "supernet")
        omgd = steps_per_second(omgd_run.log_file, "distill")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {device}; torch {torch.__version__}; batch {args.batch}, {args.size}x{args.size}, "
          f"{args.steps} steps per stage ({total:.0f} s in all)")
    print(f"distill step (mobile ngf 64, fixed width): {baseline:.3f} steps/s")
    print(f"supernet step (ngf 64, sampled configs):    {supernet:.3f} steps/s")
    print(f"supernet / distill speed: {supernet / baseline:.2f}x")
    print(f"OMGD step (3 generators + D, {features} features): {omgd:.3f} steps/s")
    print(f"OMGD step / distill step time: {baseline / omgd:.2f}x")


if __name__ == "__main__":
    main()
