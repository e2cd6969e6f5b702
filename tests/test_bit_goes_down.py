"""Bit-Goes-Down on the shared pipeline: k capped as the original caps it (the published ResNet-18s' codebooks),
the EM's objective on real activations, the packed artefact, batch-norm statistics, refusals before anything
runs, and a run killed mid-layer that resumes to the same student."""

import copy
import json
import math
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from photos import photo_crops
from processes import kill_when
from torch import nn

from gzoo.compress.bit_goes_down import (
    Activations,
    QuantizeSettings,
    assign,
    capped_centroids,
    em,
    fold_statistics,
    lacks_statistics,
    measure_statistics,
    packed_student,
    plan_layers,
    quantize_layer,
    weight_blocks,
)
from gzoo.data.modeldir import PACKED_WEIGHTS, read_config, save_model_dir
from gzoo.data.packing import pq
from gzoo.models import create_model, load_model_dir

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kill-the-bits"
VINTAGIFY = "community/vintagify-cyclegan"
TRUNK = [f"model.{i}.conv_block.{j}" for i in range(11, 19) for j in (1, 6)]
# A run small enough for the default suite: 6 of vintagify's layers quantized on 32x32 photo crops.
TINY = {
    "method": "bit-goes-down", "task": "vintage-photo", "teacher": VINTAGIFY,
    "data": {"builtin": "skimage-photos", "load_size": 32, "crop_size": 32, "crops_per_photo": 2,
             "held_out_crops_per_photo": 1},
    "quantize": {"n_iter": 3, "n_activations": 2, "n_samples": 25000, "dense": ["model.26", *TRUNK]},
    "training": {"batch_size": 2, "threads": 1, "log_every": 1, "checkpoint_every": 1},
    "stages": {"layer": {"steps": 3}, "finetune": {"steps": 2, "lr": 0.01, "lr_step": 1}},
    "evaluate": {"metrics": ["psnr"]},
}


def write_recipe(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


# --- the codebook sizes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "n_blocks", "capped"), [
    (256, 1025, 256),  # 256.25: 256 is below it
    (256, 1024, 128),  # 256 itself is not below 256
    (256, 1000, 128),
    (2048, 128_000, 2048),
    (2048, 32_000, 2048),
    (256, 4, 256),  # n_blocks / 4 <= 1: the original's index wraps round to 2**15, so k stays (and is refused)
])
def test_k_is_capped_at_the_largest_power_of_two_below_a_quarter_of_the_blocks(k, n_blocks, capped):
    assert capped_centroids(k, n_blocks) == capped


@pytest.mark.parametrize(("checkpoint", "settings"), [
    ("resnet18_small_blocks", QuantizeSettings(block_size_cv=9, block_size_pw=4, block_size_fc=4)),
    ("resnet18_large_blocks", QuantizeSettings(block_size_cv=18, block_size_pw=4, block_size_fc=4)),
])
def test_the_plan_gives_the_published_checkpoints_codebooks(checkpoint, settings):
    """The README's commands, planned on ResNet-18: every layer's d and k are those of the published file."""
    from gzoo.zoo.converters import get_converter

    path = FIXTURES / f"{checkpoint}.pth"
    if not path.is_file():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {FIXTURES}")
    packed = get_converter("kill-the-bits")(path, None, {}).extra["packed"]
    model = create_model("resnet18")
    plans = plan_layers(settings, model)
    assert {plan.name: {"k": plan.k, "d": plan.d} for plan in plans} == packed["layers"]
    # And the paper's accounting of such a student is the published file's, to the byte.
    dense = sum(p.numel() for p in model.parameters()) - sum(math.prod(plan.shape) for plan in plans)
    assert pq.accounted_bytes([(plan.n_blocks, plan.k, plan.d) for plan in plans], dense) == packed["packed_bytes"]
    assert [plan.name for plan in plans][:3] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1"]


# --- the EM on real activations ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vintagify() -> nn.Module:
    from gzoo import api

    return load_model_dir(api.model_directory(VINTAGIFY)).eval().requires_grad_(False)


def real_crops(size: int = 32) -> torch.Tensor:
    """Real photographs (scikit-image's), 4 crops each, in [-1, 1]."""
    crops = photo_crops(("astronaut", "chelsea", "coffee"), size, 4)
    return torch.stack([torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 127.5 - 1 for crop in crops])


def layer_inputs(model: nn.Module, name: str, inputs: torch.Tensor) -> torch.Tensor:
    module = dict(model.named_modules())[name]
    kept = []
    handle = module.register_forward_pre_hook(lambda m, args: kept.append(args[0].clone()))
    with torch.no_grad():
        model(inputs)
    handle.remove()
    return kept[0]


@pytest.mark.parametrize("layer", ["model.4", "model.19"])  # a stride-2 conv; a transposed conv
def test_em_never_raises_its_objective_on_real_activations(vintagify, layer):
    plan = next(p for p in plan_layers(QuantizeSettings(n_samples=25000, dense=["model.26"]), vintagify)
                if p.name == layer)
    module = dict(vintagify.named_modules())[layer]
    activations = Activations(layer_inputs(vintagify, layer, real_crops()), module, plan)
    generator = torch.Generator().manual_seed(0)
    drawn = activations.sample(generator)  # fixed activations: the EM's own objective is measured on them
    codebook = em(weight_blocks(module, plan), plan.k, 8, lambda: drawn, drawn, generator, sample=False,
                  eval_rows=None)
    objective = codebook.objective
    assert all(later <= earlier * (1 + 1e-5) for earlier, later in pairwise(objective)), objective
    assert objective[-1] < 0.97 * objective[0]  # and it falls
    assert torch.bincount(codebook.assignments, minlength=plan.k).min() >= 1  # no cluster left empty


def test_activation_rows_are_the_layer_s_receptive_fields(vintagify):
    """A row of the reshape times the weight's blocks, summed, is the layer's output at that position: for a
    stride-2 conv and for a transposed conv (taken as the convolution it equals)."""
    inputs = real_crops()[:2]
    for layer in ("model.4", "model.19"):
        plan = next(p for p in plan_layers(QuantizeSettings(n_samples=25000, dense=["model.26"]), vintagify)
                    if p.name == layer)
        module = dict(vintagify.named_modules())[layer]
        activations = Activations(layer_inputs(vintagify, layer, inputs), module, plan)
        with torch.no_grad():
            output = module(layer_inputs(vintagify, layer, inputs)) - module.bias[None, :, None, None]
        weight = pq.as_conv(module.weight) if plan.transposed else module.weight
        rows = activations.rows(torch.arange(activations.count))
        expected = output.permute(0, 2, 3, 1).reshape(-1, plan.shape[0])
        torch.testing.assert_close(rows @ weight.flatten(1).t(), expected, atol=2e-4, rtol=1e-4)


def test_the_e_step_is_the_exhaustive_least_output_error():
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(300, 9, generator=generator).relu()
    blocks, centroids = torch.randn(500, 9, generator=generator), torch.randn(16, 9, generator=generator)
    brute = torch.stack([(activations @ (blocks - c).t()).pow(2).sum(0) for c in centroids]).argmin(0)
    assert torch.equal(assign(blocks, centroids, activations.t() @ activations), brute)


# --- the run ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    """The tiny recipe run end to end through the CLI (its own GZOO_HOME)."""
    root = tmp_path_factory.mktemp("bgd")
    recipe = write_recipe(root / "tiny.yaml", TINY)
    env = {**os.environ, "GZOO_HOME": str(root / "home")}
    result = subprocess.run([sys.executable, "-m", "gzoo", "compress", str(recipe), "-o", str(root / "run"),
                             "--json"], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    return root, json.loads(result.stdout)


def test_the_packed_artefact_decodes_to_exactly_the_quantizer_s_weights(tiny_run, run_gzoo):
    from safetensors import safe_open

    root, summary = tiny_run
    student = Path(summary["student"])
    assert read_config(student)["packing"] == "pq"
    with safe_open(student / PACKED_WEIGHTS, "pt") as file:
        stored = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open has no iterator)
        layers = json.loads(file.metadata()["layers"])
    assert sorted(layers) == sorted(f"{row['layer']}.weight" for row in summary_layers(student))
    assert len(layers) == 6 and layers["model.19.weight"]["transposed"]
    # The quantizer's own last centroids and assignments: the global fine-tuning's checkpoint.
    final = torch.load(root / "run" / "finetune" / "checkpoint.pt", weights_only=True)["modules"]["student"]
    loaded = load_model_dir(student).state_dict()
    for key, layer in layers.items():
        name = key.removesuffix(".weight")
        centroids, assignments = stored[key + pq.CENTROIDS], stored[key + pq.ASSIGNMENTS]
        assert centroids.dtype == torch.float16 and assignments.dtype == torch.uint8
        assert torch.equal(centroids, final[f"{name}.parametrizations.weight.original"].half())
        assert torch.equal(assignments.long(), final[f"{name}.parametrizations.weight.0.assignments"])
        shape = layer["shape"]
        conv_shape = [shape[1], shape[0], *shape[2:]] if layer["transposed"] else shape
        weight = pq.decode_weight(centroids, assignments, conv_shape)
        assert torch.equal(loaded[key], pq.as_conv(weight) if layer["transposed"] else weight), key
    # Every other tensor is stored as it is: the dense layers equal the teacher's.
    from gzoo import api

    teacher = load_model_dir(api.model_directory(VINTAGIFY)).state_dict()
    for key in ("model.1.weight", "model.26.weight", "model.12.conv_block.1.weight", "model.2.weight"):
        assert torch.equal(loaded[key], teacher[key]), key
    info = json.loads(run_gzoo("info", str(student), "--json", home=root / "home").stdout)["size"]
    assert info["packed_bytes"] == summary["size"]["packed_bytes"]
    assert info["file_bytes"] == (student / PACKED_WEIGHTS).stat().st_size
    # The paper's accounting: 8-bit indices (k = 256), fp16 centroids, every other parameter at fp32.
    codebooks = [(stored[key + pq.ASSIGNMENTS].numel(), *stored[key + pq.CENTROIDS].shape) for key in layers]
    assert all(k == 256 for _, k, _ in codebooks)
    quantized = sum(n * d for n, _, d in codebooks)
    dense = sum(value.numel() for key, value in teacher.items() if "running" not in key) - quantized
    assert summary["size"]["packed_bytes"] == sum(n + k * d * 2 for n, k, d in codebooks) + dense * 4


def summary_layers(student: Path) -> list[dict]:
    return read_config(student)["lineage"]["quantize"]["layers"]


def test_the_run_measures_its_baselines_and_is_stored(tiny_run, run_gzoo):
    root, summary = tiny_run
    baselines = summary["baselines"]
    assert set(baselines) == {"psnr, plain k-means on the weights (same d and k)", "psnr, EM before fine-tuning",
                              "psnr, after the layer-wise fine-tuning", "psnr, after the global fine-tuning (final)"}
    assert all(10 < value < 60 for value in baselines.values())
    for row in summary_layers(Path(summary["student"])):
        assert row["objective_last"] <= row["objective_first"] * 1.5  # sampled activations: no strict order
    board = run_gzoo("leaderboard", "--task", "vintage-photo", "--format", "json", home=root / "home")
    rows = json.loads(board.stdout)["rows"]
    assert any(r["id"] == str(Path(summary["student"]).resolve()) for r in rows)


def test_a_run_killed_mid_layer_resumes_to_the_same_student(tiny_run, tmp_path):
    """SIGKILL during a layer's fine-tuning, then --resume: the student is bit for bit the uninterrupted one's."""
    root, summary = tiny_run
    recipe = write_recipe(tmp_path / "tiny.yaml", TINY)
    run = tmp_path / "run"
    env = {**os.environ, "GZOO_HOME": str(root / "home")}
    command = [sys.executable, "-m", "gzoo", "compress", str(recipe), "-o", str(run)]
    kill_when(command, env, (run / "quantize" / "model.10.conv_block.1" / "checkpoint.pt").is_file, 600)
    assert not (run / "quantize" / "layers" / "model.10.conv_block.1.pt").exists()
    resumed = subprocess.run([*command, "--resume", "--json"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    again = load_model_dir(Path(json.loads(resumed.stdout)["student"])).state_dict()
    first = load_model_dir(Path(summary["student"])).state_dict()
    assert again.keys() == first.keys()
    assert all(torch.equal(again[key], first[key]) for key in first)


# --- classifiers and batch norms --------------------------------------------------------------------------------

def test_batch_norm_statistics_are_updated_and_survive_save_and_load(tmp_path, gzoo_home):
    """A ResNet-18 (10 classes) quantized with a global fine-tuning in train mode: the statistics change, the
    packed directory keeps them, and gzoo's classifier evaluation runs on class folders."""
    from PIL import Image
    from skimage import data as photos

    from gzoo.compress.pipeline import compress
    from gzoo.compress.recipe import load_recipe

    torch.manual_seed(0)
    teacher = create_model("resnet18", num_classes=10)
    teacher_dir = save_model_dir(tmp_path / "teacher", teacher.state_dict(),
                                 {"arch": "resnet18", "arch_args": {"num_classes": 10},
                                  "input": {"channels": 3, "height": 32, "width": 32}})
    classes = tmp_path / "classes"
    for label, photo in ((3, "chelsea"), (7, "coffee")):
        (classes / str(label)).mkdir(parents=True)
        Image.fromarray(getattr(photos, photo)()).save(classes / str(label) / "a.png")
    document = {**TINY, "teacher": str(teacher_dir),
                "quantize": {"n_iter": 2, "n_activations": 2, "block_size_cv": 18},
                "stages": {"layer": {"steps": 1}, "finetune": {"steps": 3, "lr": 0.01}},
                "evaluate": {"data": str(classes), "metrics": ["top1", "top5"]}}
    recipe = load_recipe(write_recipe(tmp_path / "r18.yaml", document))
    summary = compress(recipe, tmp_path / "run", lambda: teacher_dir)
    loaded = load_model_dir(Path(summary["student"]))
    trained = torch.load(tmp_path / "run" / "finetune" / "checkpoint.pt", weights_only=True)["modules"]["student"]
    for key in ("bn1.running_mean", "layer4.1.bn2.running_var", "layer2.0.downsample.1.running_mean"):
        assert not torch.equal(trained[key], teacher.state_dict()[key]), key  # the statistics moved
        assert torch.equal(loaded.state_dict()[key], trained[key]), key  # and were kept
    assert loaded.state_dict()["bn1.num_batches_tracked"] == 3
    assert set(summary["metrics"]) == {"top1", "top5"} and "identity_psnr" not in summary
    assert "baselines" not in summary


def test_a_teacher_without_batch_norm_statistics_gets_them_folded_in_and_computes_the_same(tmp_path):
    """The published ResNet-18 decodes with every batch norm at mean 0 and variance 1: in train mode (the global
    fine-tuning's) it is then another network. Statistics measured on real crops and folded into the batch
    norms' weight and bias leave its eval-mode outputs as they were and make train mode on such a batch agree."""
    from torch.nn import functional as F

    from gzoo.zoo.converters import get_converter

    if not FIXTURES.is_dir():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {FIXTURES}")
    converted = get_converter("kill-the-bits")(FIXTURES / "resnet18_small_blocks.pth", None, {})
    model = create_model(converted.arch, **converted.arch_args)
    model.load_state_dict(converted.state_dict)
    model.eval()
    crops = torch.tensor(np.stack(photo_crops(("chelsea", "coffee", "astronaut", "rocket"), 64, 4)))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    inputs = ((crops.float() / 255 - mean) / std).permute(0, 3, 1, 2).contiguous()

    def train_mode_outputs() -> torch.Tensor:
        trial = copy.deepcopy(model).train()
        with torch.no_grad():
            return trial(inputs)

    def kl(outputs: torch.Tensor, expected: torch.Tensor) -> float:
        return F.kl_div(F.log_softmax(outputs, 1), F.softmax(expected, 1), reduction="batchmean").item()

    with torch.no_grad():
        before = model(inputs)
    assert lacks_statistics(model)
    assert kl(train_mode_outputs(), before) > 1  # measured: 306
    fold_statistics(model, measure_statistics(model, inputs.split(4)))
    assert not lacks_statistics(model)
    with torch.no_grad():
        after = model(inputs)
    assert torch.allclose(after, before, atol=1e-4, rtol=1e-4)
    assert kl(train_mode_outputs(), before) < 1e-4  # measured: 0 (to float error)
    assert model.layer4[1].bn2.running_var.mean() != 1


# --- refusals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "message"), [
    (["--set=quantize.dense=[]"], "recipe: quantize.block_size_cv 9 does not divide the 3136 weights per output "
                                  "channel of layer model.26 (64 x 7x7); choose a block size that divides it, or "
                                  "keep the layer dense with quantize.dense: [model.26]"),
    (["--set=quantize.block_size_cv=576", "--set=quantize.n_centroids_threshold=1000"],
     "recipe: layer model.4 has 128 blocks of 576, fewer than its 256 centroids"),
    (["--set=quantize.n_samples=null"], "layer model.4 has no per-stage sample count of the original"),
    (["--set=quantize.dense=[model.99]"], "quantize.dense names 'model.99', which is no conv or linear layer"),
])
def test_a_recipe_that_does_not_fit_the_teacher_fails_before_anything_runs(tmp_path, compress_refused, overrides,
                                                                          message):
    compress_refused(write_recipe(tmp_path / "tiny.yaml", TINY), *overrides, message=message)


def test_a_classifier_teacher_needs_class_folders_to_be_evaluated_on(tmp_path, run_gzoo):
    teacher = save_model_dir(tmp_path / "teacher", create_model("resnet18", num_classes=10).state_dict(),
                             {"arch": "resnet18", "arch_args": {"num_classes": 10}})
    recipe = write_recipe(tmp_path / "r18.yaml", {**TINY, "teacher": str(teacher), "quantize": {}})
    result = run_gzoo("compress", str(recipe), "-o", str(tmp_path / "run"))
    assert result.returncode == 2 and "is a classifier, evaluated on labelled class folders" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


def test_quantize_layer_round_trips_its_codebook_and_averages_gradients_per_centroid():
    conv = nn.Conv2d(8, 8, 3, bias=False)  # 64 blocks of 9: k capped at 8
    plan = plan_layers(QuantizeSettings(n_samples=100), nn.Sequential(nn.Conv2d(1, 8, 1), conv))[0]
    assert plan.k == 8
    centroids = torch.randn(plan.k, 9)
    assignments = torch.arange(plan.n_blocks) % plan.k
    quantize_layer(conv, plan, centroids, assignments)
    torch.testing.assert_close(conv.parametrizations.weight.original, centroids, atol=0, rtol=0)
    conv.weight.sum().backward()  # every block's gradient is ones: the average per centroid is ones too
    assert torch.equal(conv.parametrizations.weight.original.grad, torch.ones_like(centroids))
    state, packed = packed_student(nn.Sequential(nn.Conv2d(1, 8, 1), conv), [plan])
    assert torch.equal(pq.decode(packed.tensors, packed.metadata)["1.weight"], state["1.weight"])


# --- the shipped recipes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "cv", "pw", "fc_k"), [
    ("resnet18_small_blocks", 9, 4, 2048), ("resnet18_large_blocks", 18, 4, 2048),
    ("resnet50_small_blocks", 9, 4, 1024), ("resnet50_large_blocks", 18, 8, 1024),
])
def test_the_imagenet_recipes_carry_the_readme_s_commands(name, cv, pw, fc_k):
    from gzoo.compress.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "bit_goes_down" / f"{name}.yaml")
    q = recipe.quantize
    assert (q.block_size_cv, q.block_size_pw, q.block_size_fc) == (cv, pw, 4)
    assert (q.n_centroids_cv, q.n_centroids_pw, q.n_centroids_fc) == (256, 256, fc_k)
    assert (q.n_iter, q.n_activations, q.n_samples, q.n_centroids_threshold) == (100, 1024, None, 4)
    assert recipe.stages.layer.steps == 2500 and recipe.training.lr == 0.05
    finetune = recipe.stages.finetune
    assert (finetune.steps, finetune.lr, finetune.lr_step, finetune.lr_gamma) == (90000, 0.01, 30000, 0.1)
    assert (recipe.training.momentum, recipe.training.weight_decay, recipe.training.batch_size) == (0.9, 1e-4, 128)
    assert recipe.data.layout == "classes" and recipe.evaluate.metrics == ["top1", "top5"]
