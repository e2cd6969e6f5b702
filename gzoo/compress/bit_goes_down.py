"""Bit-Goes-Down (Stock et al., "And the Bit Goes Down", ICLR 2020) as a method over the shared pipeline.

Product quantization of every conv and fully connected layer but the first, bottom-up, as the original
(facebookresearch/kill-the-bits, ``src/quantize.py``) does it:

- ``quantize``: for each layer in order, its input activations are gathered from the student (the layers below
  already quantized and fine-tuned) on ``n_activations`` training images; its weight is cut into blocks of d
  (``utils/reshape.py``: a block of 9 in a 3x3 conv is one input channel's kernel, a block of 18 two of them) and
  one codebook of k centroids is fitted by the activation-weighted EM of ``quantization/em.py``: the E-step gives
  each block the centroid of least output error on the activations, the M-step solves least squares per centroid
  with the pseudo-inverse of the activations, and an empty cluster takes the centroid of the most populated one
  with a perturbation of ``eps`` (the pair then splits that cluster). k is capped at the largest power of two
  below n_blocks / 4. The centroids are then fine-tuned with the assignments fixed, the gradients of a centroid's
  blocks averaged (``optim/centroid_sgd.py``: SGD, lr 0.05, momentum 0.9, weight decay 1e-4), by distillation
  from the dense teacher: KL divergence for a classifier (``utils/training.py``), the output's L1 or L2 for a
  generator. Batch norms stay in eval mode, as in the original's layer-wise loop.
- ``finetune``: every centroid together, the student in train mode so batch-norm statistics follow the quantized
  layers (kept in the packed artefact; the original's released checkpoints dropped them).
- ``export``: the packed form (``gzoo.data.packing.pq``) with its size in the paper's accounting; for a generator
  the held-out PSNR against the teacher of plain k-means on the weights (same layers, d and k), of the EM before
  any fine-tuning and after the layer-wise one, measured beside the final student's.

Two computations are rearranged, with the same results: the E-step's ||A (m - c)||^2 is expanded through the
Gram matrix A^T A (the original broadcasts a k x samples x columns tensor, which no CPU holds), and activations
are sampled as rows of the original's reshape without unfolding all of them first. A transposed convolution,
which the original never meets, is quantized as the convolution it equals (``pq.as_conv``) on its
zero-interleaved input.
"""

import copy
import math
import os
import random
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from gzoo.compress.data import held_out_inputs
from gzoo.compress.engine import Optimizer, TrainingSettings
from gzoo.compress.losses import RECON_LOSSES, kl_distillation
from gzoo.compress.method import Exported, Method, register_method
from gzoo.compress.pipeline import Run
from gzoo.compress.recipe import Recipe, check_stage_length, one_of
from gzoo.compress.settings import StageSettings
from gzoo.data.modeldir import read_config
from gzoo.data.packing import pq
from gzoo.errors import GzooError
from gzoo.evaluation import IMAGENET_MEAN, IMAGENET_STD
from gzoo.metrics.fidelity import psnr
from gzoo.models import architecture_kind

QUANTIZABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
EVAL_ROWS = 128  # em.py evaluates its objective on 128 rows of a fixed sample of activations


# --- the recipe sections ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantizeSettings:
    """quantize.py's arguments (defaults: its own, which are the small-blocks ResNet-18 setting)."""

    block_size_cv: int = 9  # convs with kernels larger than 1x1
    block_size_pw: int = 4  # 1x1 convs
    block_size_fc: int = 4  # fully connected layers
    n_centroids_cv: int = 256
    n_centroids_pw: int = 256
    n_centroids_fc: int = 2048
    n_centroids_threshold: int = 4  # k is capped at the largest power of two below n_blocks / this
    n_iter: int = 100  # EM iterations per layer
    n_activations: int = 1024  # training images each layer's activations are gathered on
    # Activations drawn per EM iteration, as n_samples // C_out rows of the reshape (then unrolled per block).
    # None: the original's dynamic_sampling, by ResNet stage: 1,000 in layer1-2, 25,000 in layer3-4, 5,000 in fc.
    n_samples: int | None = None
    sample: bool = True  # draw fresh activations every iteration (PQ's default)
    eps: float = 1e-8  # the perturbation that splits a cluster for an empty one
    dense: list[str] = field(default_factory=list)  # layers kept dense besides the first
    baselines: bool = True  # generators: measure k-means on the weights and the EM before fine-tuning


@dataclass(frozen=True)
class BitGoesDownTrainingSettings(TrainingSettings):
    batch_size: int = 128
    lr: float = 0.05  # --lr-centroids; stages.finetune.lr is --lr-whole
    momentum: float = 0.9
    weight_decay: float = 1e-4
    recon_loss: str = "l1"  # a generator's distillation: l1 | l2 of its output against the teacher's


@dataclass(frozen=True)
class Stages:
    layer: StageSettings = field(default_factory=lambda: StageSettings(steps=2500))  # --finetune-centroids
    finetune: StageSettings | None = None  # global: 9 x 10,000 steps at lr 0.01, x0.1 every 3 epochs


def _check(recipe: Recipe) -> None:
    settings = recipe.quantize
    one_of(recipe.training.recon_loss, ("l1", "l2"), "training.recon_loss")
    for name in ("block_size_cv", "block_size_pw", "block_size_fc", "n_centroids_cv", "n_centroids_pw",
                 "n_centroids_fc", "n_centroids_threshold", "n_iter", "n_activations"):
        if getattr(settings, name) < 1:
            raise GzooError(f"recipe: 'quantize.{name}' must be at least 1")
    if settings.n_samples is not None and settings.n_samples < 1:
        raise GzooError("recipe: 'quantize.n_samples' must be at least 1 (or null for the original's per-stage counts)")
    check_stage_length("layer", recipe.stages.layer)
    if recipe.stages.finetune is not None:
        check_stage_length("finetune", recipe.stages.finetune)


def _stages(recipe: Recipe) -> list[str]:
    return ["quantize", *(["finetune"] if recipe.stages.finetune is not None else []), "export"]


# --- which layers, with which blocks and codebooks --------------------------------------------------------------

@dataclass(frozen=True)
class LayerPlan:
    name: str
    shape: tuple[int, ...]  # the weight's shape, a transposed conv's as the conv it equals: [C_out, C_in, kh, kw]
    transposed: bool
    d: int  # block size
    k: int  # centroids
    n_samples: int

    @property
    def n_blocks(self) -> int:
        return math.prod(self.shape) // self.d

    @property
    def per_channel(self) -> int:
        """Blocks per output channel (quantize.py's ``n_blocks``)."""
        return math.prod(self.shape[1:]) // self.d


def capped_centroids(k: int, n_blocks: int, threshold: int = 4) -> int:
    """quantize.py's cap: k at most the largest power of two (of 2**0 .. 2**15) strictly below n_blocks /
    threshold. As there, a layer of at most ``threshold`` blocks wraps round to 2**15 (and is refused later)."""
    powers = [2**i for i in range(16)]
    return min(k, powers[bisect_left(powers, n_blocks / threshold) - 1])


def dynamic_sampling(layer: str) -> int | None:
    """utils/dynamic_sampling.py: activations to sample for a torchvision ResNet's layer; None for other names."""
    if "layer1" in layer or "layer2" in layer:
        return 1000
    if "layer3" in layer or "layer4" in layer:
        return 25000
    if "fc" in layer or "classifier" in layer:
        return 5000
    return None


def plan_layers(settings: QuantizeSettings, model: nn.Module) -> list[LayerPlan]:
    """The layers to quantize, bottom-up (the first stays dense), each checked: one line for a block size that
    does not divide a layer's weights per output channel or a codebook larger than the layer's blocks."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, QUANTIZABLE)]
    names = [name for name, _ in layers]
    for name in settings.dense:
        if name not in names:
            raise GzooError(f"recipe: quantize.dense names {name!r}, which is no conv or linear layer of the teacher "
                            f"(its layers: {', '.join(names[:4])}, ...)")
    plans = []
    for name, module in layers[1:]:
        if name in settings.dense:
            continue
        transposed = isinstance(module, nn.ConvTranspose2d)
        if transposed and (module.groups != 1 or module.dilation != (1, 1)):
            raise GzooError(f"layer {name}: a grouped or dilated transposed conv cannot be quantized; keep it dense "
                            f"with quantize.dense: [{name}]")
        shape = tuple(pq.as_conv(module.weight).shape if transposed else module.weight.shape)
        if len(shape) == 4:
            kind = "cv" if shape[2] * shape[3] > 1 else "pw"
            described = f"{shape[1]} x {shape[2]}x{shape[3]}"
        else:
            kind, described = "fc", f"{shape[1]} inputs"
        d, k = getattr(settings, f"block_size_{kind}"), getattr(settings, f"n_centroids_{kind}")
        per_channel = math.prod(shape[1:])
        if per_channel % d:
            raise GzooError(f"recipe: quantize.block_size_{kind} {d} does not divide the {per_channel} weights per "
                            f"output channel of layer {name} ({described}); choose a block size that divides it, or "
                            f"keep the layer dense with quantize.dense: [{name}]")
        n_blocks = math.prod(shape) // d
        k = capped_centroids(k, n_blocks, settings.n_centroids_threshold)
        if k > n_blocks:
            raise GzooError(f"recipe: layer {name} has {n_blocks} blocks of {d}, fewer than its {k} centroids; give "
                            f"it a smaller quantize.block_size_{kind} or keep it dense with quantize.dense: [{name}]")
        samples = settings.n_samples or dynamic_sampling(name)
        if samples is None:
            raise GzooError(f"recipe: layer {name} has no per-stage sample count of the original (ResNet layer1-4 "
                            "and fc only); set quantize.n_samples, e.g. 25000")
        plans.append(LayerPlan(name, shape, transposed, d, k, samples))
    return plans


def _check_teacher(recipe: Recipe, model: nn.Module) -> None:
    plan_layers(recipe.quantize, model)


# --- activations ------------------------------------------------------------------------------------------------

class Activations:
    """A layer's input activations on some images, from which rows of the original's reshape are drawn: each
    row is one output position's receptive field (C_in x kh x kw, zero-padded as ``reshape_activations`` pads),
    unrolled into one row of d per block."""

    def __init__(self, inputs: torch.Tensor, module: nn.Module, plan: LayerPlan) -> None:
        self.plan = plan
        if isinstance(module, nn.Linear):
            self.rows_of = inputs.flatten(0, -2)
            return
        kh, kw = plan.shape[2:]
        if isinstance(module, nn.ConvTranspose2d):
            # The equal convolution runs at stride 1 over the input with stride - 1 zeros between its pixels,
            # padded by k - 1 - padding (and output_padding on the far side).
            n, c, h, w = inputs.shape
            sy, sx = module.stride
            spread = inputs.new_zeros(n, c, (h - 1) * sy + 1, (w - 1) * sx + 1)
            spread[:, :, ::sy, ::sx] = inputs
            (py, px), (oy, ox) = module.padding, module.output_padding
            inputs = F.pad(spread, (kw - 1 - px, kw - 1 - px + ox, kh - 1 - py, kh - 1 - py + oy))
            self.stride, self.dilation, self.groups = (1, 1), (1, 1), 1
        else:
            py, px = module.padding
            inputs = F.pad(inputs, (px, px, py, py))
            self.stride, self.dilation, self.groups = module.stride, module.dilation, module.groups
        self.padded = inputs
        n, _, h, w = inputs.shape
        self.out_h = (h - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        self.out_w = (w - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        self.rows_of = None

    @property
    def count(self) -> int:
        """Rows of the (group-stacked) reshape."""
        if self.rows_of is not None:
            return len(self.rows_of)
        return self.padded.shape[0] * self.out_h * self.out_w * self.groups

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` of the reshape: [len(index), C_in / groups * kh * kw]."""
        if self.rows_of is not None:
            return self.rows_of[index]
        _, c_in, kh, kw = self.plan.shape
        positions = self.padded.shape[0] * self.out_h * self.out_w
        group, position = index // positions, index % positions
        image, rest = position // (self.out_h * self.out_w), position % (self.out_h * self.out_w)
        top = (rest // self.out_w) * self.stride[0]
        left = (rest % self.out_w) * self.stride[1]
        channel = group[:, None] * c_in + torch.arange(c_in)[None, :]
        dy = torch.arange(kh) * self.dilation[0]
        dx = torch.arange(kw) * self.dilation[1]
        patches = self.padded[image[:, None, None, None], channel[:, :, None, None],
                              (top[:, None, None, None] + dy[None, None, :, None]),
                              (left[:, None, None, None] + dx[None, None, None, :])]
        return patches.flatten(1)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """PQ.sample_activations: n_samples // C_out random rows, each cut into its blocks: [rows * blocks, d]."""
        count = max(1, self.plan.n_samples // self.plan.shape[0])
        index = torch.randint(0, self.count, (count,), generator=generator)
        rows = self.rows(index).float()
        return rows.view(count, self.plan.per_channel, self.plan.d).transpose(0, 1).reshape(-1, self.plan.d)


# --- the EM -----------------------------------------------------------------------------------------------------

@dataclass
class Codebook:
    centroids: torch.Tensor  # k x d
    assignments: torch.Tensor  # one centroid per block, row block * C_out + channel
    objective: list[float] = field(default_factory=list)  # after each iteration
    resolved: list[int] = field(default_factory=list)  # empty clusters split at each iteration


def assign(blocks: torch.Tensor, centroids: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """The E-step: each block's centroid of least ||A (block - centroid)||^2, i.e. of least
    c^T G c - 2 c^T G m with G = A^T A (the block's own term is the same for every centroid)."""
    weighted = centroids @ gram  # k x d
    own = (weighted * centroids).sum(1)
    chunk = max(1, 2**24 // len(centroids))
    return torch.cat([(own[None, :] - 2 * part @ weighted.t()).argmin(1) for part in blocks.split(chunk)])


def output_error(blocks: torch.Tensor, codebook: Codebook, activations: torch.Tensor, normalize_rows: int) -> float:
    """em.py's objective: ||A (M_hat - M)|| / sqrt(rows * blocks)."""
    diff = codebook.centroids[codebook.assignments] - blocks
    gram = activations.t() @ activations
    total = ((diff @ gram) * diff).sum().clamp_min(0)
    return math.sqrt(total.item() / (normalize_rows * len(blocks)))


def em(blocks: torch.Tensor, k: int, n_iter: int, draw: Callable[[], torch.Tensor], eval_activations: torch.Tensor,
       generator: torch.Generator, eps: float = 1e-8, sample: bool = True, eval_rows: int | None = EVAL_ROWS,
       progress: Callable[[int, float], None] | None = None) -> Codebook:
    """Fit k centroids to ``blocks`` (n x d) minimising the output error on the activations ``draw`` gives
    (a fresh draw every iteration when ``sample``), as em.py's EM; the objective is measured on the first
    ``eval_rows`` of ``eval_activations`` (None: all of them)."""
    picker = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
    codebook = Codebook(blocks[torch.randint(0, len(blocks), (k,), generator=generator)].clone(),
                        torch.zeros(len(blocks), dtype=torch.long))
    evaluated = eval_activations if eval_rows is None else eval_activations[:eval_rows]
    normalize = len(evaluated) if eval_rows is None else eval_rows
    activations = draw()
    for iteration in range(n_iter):
        if sample and iteration:
            activations = draw()
        gram = activations.t() @ activations
        projection = torch.linalg.pinv(activations) @ activations  # solve_stack's A^+ A
        centroids = codebook.centroids
        assignments = assign(blocks, centroids, gram)
        counts = torch.bincount(assignments, minlength=k)
        empty = [int(i) for i in (counts == 0).nonzero()]
        codebook.resolved.append(len(empty))
        while empty:  # split the most populated clusters, one for each empty one, then assign again
            picker.shuffle(empty)
            sources = counts.argsort(descending=True)[:min(len(empty), int((counts > 0).sum()))]
            targets = torch.tensor(empty[:len(sources)])
            shift = torch.randn(len(sources), centroids.shape[1], generator=generator) * eps
            centroids[targets] = centroids[sources] + shift
            centroids[sources] -= shift
            assignments = assign(blocks, centroids, gram)
            counts = torch.bincount(assignments, minlength=k)
            still = [int(i) for i in (counts == 0).nonzero()]
            if len(still) >= len(empty):
                # The split clusters' blocks are all alike (a layer with fewer distinct blocks than k, such as an
                # already quantized one): a split ties, and the original would loop for ever. The empty clusters
                # stay, unused.
                break
            empty = still
        # The M-step: the least-squares centroid of a cluster is A^+ A times the mean of its blocks.
        sums = torch.zeros_like(centroids).index_add_(0, assignments, blocks)
        solved = (sums / counts.clamp_min(1)[:, None]) @ projection.t()
        codebook.centroids = torch.where(counts[:, None] > 0, solved, centroids)
        codebook.assignments = assignments
        codebook.objective.append(output_error(blocks, codebook, evaluated, normalize))
        if progress:
            progress(iteration + 1, codebook.objective[-1])
    return codebook


def kmeans(blocks: torch.Tensor, k: int, n_iter: int, generator: torch.Generator) -> Codebook:
    """Plain k-means on the weights: the same EM with identity activations (the baseline the paper improves on)."""
    identity = torch.eye(blocks.shape[1])
    return em(blocks, k, n_iter, lambda: identity, identity, generator, sample=False, eval_rows=None)


def weight_blocks(module: nn.Module, plan: LayerPlan) -> torch.Tensor:
    weight = module.weight.detach().float().cpu()
    return pq.to_blocks(pq.as_conv(weight) if plan.transposed else weight, plan.d)


# --- quantized layers -------------------------------------------------------------------------------------------

class _AverageOverBlocks(torch.autograd.Function):
    """The identity, whose backward divides each centroid's gradient (the sum over its blocks) by its number of
    blocks: CentroidSGD averages the gradients of the blocks assigned to a centroid."""

    @staticmethod
    def forward(ctx, centroids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(counts)
        return centroids.view_as(centroids)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (counts,) = ctx.saved_tensors
        return grad / counts[:, None], None


class Quantized(nn.Module):
    """A layer's weight as a parametrization: the trained parameter is its k x d centroids, the block indices a
    buffer; each forward decodes them into the weight."""

    def __init__(self, plan: LayerPlan, assignments: torch.Tensor) -> None:
        super().__init__()
        self.plan = plan
        self.register_buffer("assignments", assignments.long().clone())
        counts = torch.bincount(self.assignments, minlength=plan.k).clamp_min(1)  # an unused centroid gets no gradient
        self.register_buffer("counts", counts.float(), persistent=False)

    def forward(self, centroids: torch.Tensor) -> torch.Tensor:
        weight = pq.from_blocks(_AverageOverBlocks.apply(centroids, self.counts)[self.assignments], self.plan.shape)
        return pq.as_conv(weight) if self.plan.transposed else weight

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """utils.centroids_from_weights: each centroid is the first of its (equal) blocks."""
        blocks = pq.to_blocks(pq.as_conv(weight) if self.plan.transposed else weight, self.plan.d)
        first = torch.full((self.plan.k,), len(blocks), dtype=torch.long, device=blocks.device)
        first = first.scatter_reduce(0, self.assignments, torch.arange(len(blocks), device=blocks.device), "amin")
        return blocks[first.clamp_max(len(blocks) - 1)]


def quantize_layer(module: nn.Module, plan: LayerPlan, centroids: torch.Tensor, assignments: torch.Tensor) -> None:
    """Give ``module`` the weight its codebook stands for, as a parametrization of its centroids."""
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight")
    with torch.no_grad():
        weight = pq.decode_weight(centroids, assignments, plan.shape).to(module.weight)
        module.weight.copy_(pq.as_conv(weight) if plan.transposed else weight)
    parametrize.register_parametrization(module, "weight", Quantized(plan, assignments.to(module.weight.device)))


def codebook_of(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A quantized layer's (centroids, assignments)."""
    weights = module.parametrizations.weight
    return weights.original.detach(), weights[0].assignments


def _save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save(obj, staging)
    os.replace(staging, path)


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- a teacher whose batch norms hold no statistics -------------------------------------------------------------

STATISTICS_FILE = "teacher_statistics.pt"


def _batch_norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None}


def lacks_statistics(model: nn.Module) -> bool:
    """Whether every batch norm of ``model`` sits at its initial statistics (running mean 0, variance 1), as the
    published kill-the-bits checkpoints decode: their inference code runs them so, the statistics having been lost."""
    norms = _batch_norms(model).values()
    return bool(norms) and all(bool((m.running_mean == 0).all() and (m.running_var == 1).all()) for m in norms)


def measure_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
    """Each batch norm's input mean and (biased) variance per channel over ``batches``, the model in eval mode."""
    sums: dict[str, list] = {}

    def keeper(name: str) -> Callable:
        def keep(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach().double().transpose(0, 1).flatten(1)  # channels x values
            total = sums.setdefault(name, [0, 0.0, 0.0])
            total[0] += x.shape[1]
            total[1] = total[1] + x.sum(1)
            total[2] = total[2] + x.pow(2).sum(1)
        return keep

    handles = [m.register_forward_pre_hook(keeper(name)) for name, m in _batch_norms(model).items()]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    statistics = {}
    for name, (count, total, squares) in sums.items():
        mean = total / count
        statistics[name] = (mean.float(), (squares / count - mean.pow(2)).clamp_min(0).float())
    return statistics


def fold_statistics(model: nn.Module, statistics: dict[str, tuple[torch.Tensor, ...]]) -> None:
    """Give batch norms at mean 0 and variance 1 the measured statistics, their weight and bias rescaled so that
    in eval mode the model computes exactly what it did; in train mode, on batches like the measured ones, it
    then computes nearly that too (which it does not at 0 and 1)."""
    norms = _batch_norms(model)
    with torch.no_grad():
        for name, (mean, var) in statistics.items():
            norm = norms[name]
            if not norm.affine:
                raise GzooError(f"batch norm {name} holds no statistics and has no weight to fold them into")
            mean, var = mean.to(norm.running_mean), var.to(norm.running_var)
            scale = norm.weight / math.sqrt(1 + norm.eps)
            norm.bias.add_(scale * mean)
            norm.weight.copy_(scale * (var + norm.eps).sqrt())
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)


def _prepare_teacher(run: Run) -> None:
    """A teacher whose batch norms hold no statistics gets them, measured once on ``n_activations`` training
    images and folded in (its function unchanged): the global fine-tuning runs the student in train mode, as the
    original does, and at 0 and 1 that would compute another function than the teacher's. Kept in the run."""
    model = run.teacher.model
    if not lacks_statistics(model):
        return
    path = run.stage_dir("quantize") / STATISTICS_FILE
    if path.is_file():
        statistics = {name: tuple(value) for name, value in _load(path).items()}
    else:
        training = run.recipe.training
        count = -(-run.recipe.quantize.n_activations // training.batch_size)
        device = run.processes.device
        batches = (_model_input(run, run.data.batch(step, training.batch_size, training.seed).inputs.to(device))
                   for step in range(count))
        statistics = measure_statistics(model, batches)
        if run.processes.is_main:
            _save({name: list(value) for name, value in statistics.items()}, path)
        if run.notify and run.processes.is_main:
            run.notify(f"teacher: its {len(statistics)} batch norms hold no statistics (mean 0, variance 1); "
                       f"measured on {count * training.batch_size} training images and folded into their weight "
                       "and bias (its function unchanged)")
    fold_statistics(model, statistics)


# --- the stages -------------------------------------------------------------------------------------------------

def _is_classifier(run: Run) -> bool:
    return architecture_kind(run.teacher.arch) == "classifier"


def _model_input(run: Run, images: torch.Tensor) -> torch.Tensor:
    """Training images in [-1, 1] as the teacher takes them (a classifier: ImageNet's mean and std)."""
    if not _is_classifier(run):
        return images
    mean = torch.tensor(IMAGENET_MEAN, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=images.device)[:, None, None]
    return ((images + 1) / 2 - mean) / std


def _distillation(run: Run) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return kl_distillation if _is_classifier(run) else RECON_LOSSES[run.recipe.training.recon_loss]


def _student(run: Run, plans: list[LayerPlan], source: str) -> nn.Module:
    """A copy of the teacher with the layers quantized so far (``source``: "layers", the fine-tuned codebooks, or
    "em", the EM's), frozen and in eval mode."""
    student = copy.deepcopy(run.teacher.model).eval().requires_grad_(False)
    modules = dict(student.named_modules())
    for plan in plans:
        path = run.stage_dir("quantize") / source / f"{plan.name}.pt"
        if not path.is_file():
            break
        saved = _load(path)
        quantize_layer(modules[plan.name], plan, saved["centroids"], saved["assignments"])
    return student.requires_grad_(False)


class _Gathered(Exception):
    """Raised by the activation hook: the rest of the forward pass is not needed."""


def _gather(run: Run, student: nn.Module, module: nn.Module, index: int) -> torch.Tensor:
    """The layer's input activations on ``n_activations`` training images (watcher.ActivationWatcher)."""
    training = run.recipe.training
    kept: list[torch.Tensor] = []

    def keep(layer: nn.Module, inputs: tuple) -> None:
        kept.append(inputs[0].detach().cpu().clone())
        raise _Gathered

    handle = module.register_forward_pre_hook(keep)
    batches = -(-run.recipe.quantize.n_activations // training.batch_size)
    try:
        with torch.no_grad():
            for step in range(batches):
                batch = run.data.batch(index * batches + step, training.batch_size, training.seed)
                try:
                    student(_model_input(run, batch.inputs.to(run.processes.device)))
                except _Gathered:
                    pass
    finally:
        handle.remove()
    return torch.cat(kept)[:run.recipe.quantize.n_activations]


def _fine_tune(run: Run, stage: str, settings: StageSettings, student: nn.Module, modules: dict[str, nn.Module],
               first_step: int) -> None:
    """Distil the student from the teacher, training the centroids in ``modules`` (CentroidSGD)."""
    training, processes, teacher = run.recipe.training, run.processes, run.teacher.model
    distill = _distillation(run)

    def step(index: int) -> tuple[dict, dict]:
        batch = run.data.batch(first_step + index, training.batch_size, training.seed, processes.rank,
                               processes.world_size)
        inputs = _model_input(run, batch.inputs.to(processes.device))
        with torch.no_grad():
            expected = teacher(inputs)
        loss = distill(student(inputs), expected)
        return {"centroids": loss}, {"distill": loss}

    optimizer = Optimizer(tuple(modules), kind="sgd", momentum=training.momentum, weight_decay=training.weight_decay)
    run.train(stage, settings, modules, {"centroids": optimizer}, step)


def _quantize(run: Run, results: dict) -> dict:
    recipe, settings = run.recipe, run.recipe.quantize
    _prepare_teacher(run)
    plans = plan_layers(settings, run.teacher.model)
    student = _student(run, plans, "layers").to(run.processes.device)
    modules = dict(student.named_modules())
    stage_dir = run.stage_dir("quantize")
    report = []
    for index, plan in enumerate(plans):
        module, done = modules[plan.name], stage_dir / "layers" / f"{plan.name}.pt"
        if done.is_file():  # quantized and fine-tuned by an earlier (killed) run; _student loaded it
            report.append(_load(done)["report"])
            continue
        em_file = stage_dir / "em" / f"{plan.name}.pt"
        if em_file.is_file():  # fitted before a kill in its fine-tuning
            fitted = _load(em_file)
        else:
            codebook = _fit(run, student, module, plan, index)
            fitted = {"centroids": codebook.centroids, "assignments": codebook.assignments,
                      "objective": codebook.objective,
                      "report": {"layer": plan.name, "d": plan.d, "k": plan.k, "n_blocks": plan.n_blocks,
                                 "objective_first": codebook.objective[0], "objective_last": codebook.objective[-1],
                                 "empty_clusters_split": sum(codebook.resolved)}}
            if run.processes.is_main:
                _save(fitted, em_file)
        quantize_layer(module, plan, fitted["centroids"].to(run.processes.device), fitted["assignments"])
        codebook_module = module.parametrizations.weight
        codebook_module.original.requires_grad_(True)
        student.eval()  # the layer-wise fine-tuning keeps batch norms in eval mode, as the original's loop does
        steps = run.schedule(recipe.stages.layer).total
        _fine_tune(run, f"quantize/{plan.name}", recipe.stages.layer, student, {"codebook": codebook_module},
                   index * steps)
        codebook_module.original.requires_grad_(False)
        centroids, assignments = codebook_of(module)
        if run.processes.is_main:
            _save({"centroids": centroids.cpu(), "assignments": assignments.cpu(), "report": fitted["report"]}, done)
        report.append(fitted["report"])
    return {"layers": report, "dense": _dense_layers(run.teacher.model, plans)}


def _fit(run: Run, student: nn.Module, module: nn.Module, plan: LayerPlan, index: int) -> Codebook:
    """The layer's EM on its input activations in the student as quantized so far."""
    settings = run.recipe.quantize
    activations = Activations(_gather(run, student, module, index), module, plan)
    generator = torch.Generator().manual_seed(run.recipe.training.seed * 100_003 + index)
    eval_activations = activations.sample(generator)
    stage = f"quantize/{plan.name} EM"

    def progress(done: int, objective: float) -> None:
        if run.progress:
            run.progress(stage, done, settings.n_iter, {"objective": objective})

    return em(weight_blocks(module, plan), plan.k, settings.n_iter, lambda: activations.sample(generator),
              eval_activations, generator, settings.eps, settings.sample, progress=progress)


def _dense_layers(model: nn.Module, plans: list[LayerPlan]) -> list[str]:
    quantized = {plan.name for plan in plans}
    return [name for name, m in model.named_modules() if isinstance(m, QUANTIZABLE) and name not in quantized]


def _finetune(run: Run, results: dict) -> dict:
    """Every centroid at once, batch-norm statistics updated (the student in train mode)."""
    _prepare_teacher(run)
    plans = plan_layers(run.recipe.quantize, run.teacher.model)
    student = _student(run, plans, "layers")
    modules = dict(student.named_modules())
    for plan in plans:
        modules[plan.name].parametrizations.weight.original.requires_grad_(True)
    _fine_tune(run, "finetune", run.recipe.stages.finetune, student, {"student": student}, 0)
    return {"steps": run.schedule(run.recipe.stages.finetune).total}


def _final_student(run: Run, plans: list[LayerPlan], results: dict) -> nn.Module:
    student = _student(run, plans, "layers")
    if "finetune" in results:
        state = run.final_state("finetune")["student"]
        student.load_state_dict(state)
    return student.cpu().eval()


def packed_student(student: nn.Module, plans: list[LayerPlan]) -> tuple[dict[str, torch.Tensor], pq.Packed]:
    """The quantized student's dense state dict, its centroids rounded to float16, and its packed form, which
    decodes to exactly that state dict."""
    dense = copy.deepcopy(student)
    modules = dict(dense.named_modules())
    codebooks = {}
    for plan in plans:
        centroids, assignments = codebook_of(modules[plan.name])
        centroids = centroids.half().float()
        quantize_layer(modules[plan.name], plan, centroids, assignments)
        parametrize.remove_parametrizations(modules[plan.name], "weight", leave_parametrized=True)
        codebooks[f"{plan.name}.weight"] = (centroids, assignments, plan.transposed)
    state = {key: value.detach().clone() for key, value in dense.state_dict().items()}
    quantized = sum(math.prod(plan.shape) for plan in plans)
    dense_params = sum(p.numel() for p in dense.parameters()) - quantized
    return state, pq.pack(state, codebooks, dense_params)


def _export(run: Run, results: dict) -> Exported:
    recipe = run.recipe
    _prepare_teacher(run)
    plans = plan_layers(recipe.quantize, run.teacher.model)
    state, packed = packed_student(_final_student(run, plans, results), plans)
    teacher_config = read_config(run.teacher.directory)
    if _is_classifier(run):
        shape = teacher_config.get("input") or {"height": 224, "width": 224}
        size = (shape["height"], shape["width"])
    else:
        size = (recipe.data.crop_size, recipe.data.crop_size)
    dense_bytes = sum(p.numel() for p in run.teacher.model.parameters()) * pq.FP32_BYTES
    sizes = {"packed_bytes": packed.accounted_bytes, "dense_bytes": dense_bytes,
             "size_ratio": dense_bytes / packed.accounted_bytes, "packed_mb": packed.accounted_bytes / pq.MB}
    summary: dict = {"config": f"{len(plans)} layers product-quantized (d {recipe.quantize.block_size_cv}/"
                               f"{recipe.quantize.block_size_pw}/{recipe.quantize.block_size_fc}), "
                               f"{sizes['packed_mb']:.3f} MB, {sizes['size_ratio']:.1f}x smaller",
                     "size": sizes}
    if not _is_classifier(run) and recipe.quantize.baselines:
        baselines = _baselines(run, plans, results, state)
        summary["baselines"] = baselines
    return Exported(run.teacher.arch, teacher_config.get("arch_args", {}), state, size,
                    lineage={"quantize": results["quantize"], "size": sizes}, summary=summary, packed=packed)


def _baselines(run: Run, plans: list[LayerPlan], results: dict, final: dict[str, torch.Tensor]) -> dict:
    """Held-out PSNR against the teacher, measured alike for plain k-means on the weights (same layers, d and k),
    the EM before any fine-tuning, the layer-wise fine-tuning, and the final student."""
    inputs, _ = held_out_inputs(run.recipe.data, run.data.splits, run.recipe.data.crop_size)
    teacher = run.teacher.model.cpu().eval()
    with torch.inference_mode():
        expected = teacher(inputs).clamp(-1, 1)

    def measured(model: nn.Module) -> float:
        with torch.inference_mode():
            return psnr(model.cpu().eval()(inputs).clamp(-1, 1), expected)

    kmeans_student = copy.deepcopy(teacher).requires_grad_(False)
    modules = dict(kmeans_student.named_modules())
    for index, plan in enumerate(plans):
        generator = torch.Generator().manual_seed(run.recipe.training.seed * 100_003 + index)
        codebook = kmeans(weight_blocks(modules[plan.name], plan), plan.k, run.recipe.quantize.n_iter, generator)
        quantize_layer(modules[plan.name], plan, codebook.centroids, codebook.assignments)
    final_student = copy.deepcopy(teacher)
    final_student.load_state_dict(final)
    rows = {"psnr, plain k-means on the weights (same d and k)": measured(kmeans_student),
            "psnr, EM before fine-tuning": measured(_student(run, plans, "em")),
            "psnr, after the layer-wise fine-tuning": measured(_student(run, plans, "layers"))}
    if "finetune" in results:
        rows["psnr, after the global fine-tuning (final)"] = measured(final_student)
    else:
        rows["psnr, final"] = measured(final_student)
    return rows


register_method(Method(
    name="bit-goes-down", teachers=(), stages=_stages,
    run={"quantize": _quantize, "finetune": _finetune, "export": _export},
    sections={"quantize": QuantizeSettings, "stages": Stages}, training=BitGoesDownTrainingSettings, check=_check,
    check_model=_check_teacher))
