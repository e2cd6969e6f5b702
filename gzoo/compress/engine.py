"""The training engine every compression method shares.

A method describes one training step as a function of the step number that returns the objective of each
optimiser (already detached where the originals detach) and the loss terms to log; or, for a step of several
updates in an order (OMGD: the discriminator, then the teachers, then the student), a generator that yields
one such pair per update and sees the modules already updated by the ones before (a pair with no objectives
only logs its terms: what a step measures after its updates, e.g. a score). The engine does the rest:

- one optimiser per group of modules (Adam with the recipe's lr and betas by default, or SGD with momentum),
  the originals' linear decay to zero;
- bfloat16 autocast on a GPU (``training.amp``);
- torch.distributed when launched by torchrun: gradients are averaged over the processes after each backward
  (what DistributedDataParallel does; done by hand because a GAN step runs the discriminator twice), each process
  takes its share of the global batch, the logged losses are the average over processes;
- a checkpoint every ``checkpoint_every`` steps and at the end, written atomically, from which ``resume`` goes on;
- one JSON line per ``log_every`` steps in the run's log, and a progress callback with the losses.
"""

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

StepResult = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]  # objectives per optimiser, logged terms
TrainingStep = Callable[[int], StepResult | Iterator[StepResult]]  # one update, or several in order
StepProgress = Callable[[int, int, dict[str, float]], None]  # (done, total, losses)
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainingSettings:
    """What the engine needs of a recipe's ``training`` section; a method's section extends it."""

    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    checkpoint_every: int = 1000  # steps
    log_every: int = 10  # steps
    amp: bool = True  # bfloat16 autocast on a GPU; ignored on CPU
    threads: int | None = None  # CPU threads for torch (None: torch's default)


@dataclass(frozen=True)
class Optimizer:
    """One optimiser over some of a stage's modules. Adam takes the recipe's betas unless given; SGD is the
    centroid fine-tuning of Bit-Goes-Down (momentum, weight decay). ``lr`` None: the stage's."""

    members: tuple[str, ...]
    kind: str = "adam"  # adam | sgd
    lr: float | None = None
    betas: tuple[float, float] | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0

    def build(self, parameters: list[nn.Parameter], lr: float, settings: TrainingSettings) -> torch.optim.Optimizer:
        if self.kind == "adam":
            return torch.optim.Adam(parameters, lr=lr, betas=self.betas or (settings.beta1, settings.beta2),
                                    weight_decay=self.weight_decay)
        if self.kind == "sgd":
            return torch.optim.SGD(parameters, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimiser kind {self.kind!r}; use adam or sgd")


@dataclass(frozen=True)
class Processes:
    """Where this process runs in a (possibly single-process) torch.distributed job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start_processes() -> Processes:
    """Join the torchrun job this process belongs to (NCCL on GPUs, gloo on CPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size == 1:
        return Processes(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Processes(dist.get_rank(), world_size, device)


def barrier(processes: Processes) -> None:
    if processes.world_size > 1:
        dist.barrier()


def broadcast_modules(modules: dict[str, nn.Module], processes: Processes) -> None:
    """Give every process rank 0's weights (the initialisation may depend on a process's RNG)."""
    if processes.world_size == 1:
        return
    for module in modules.values():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def _distributed() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def gather_batch(share: torch.Tensor) -> torch.Tensor:
    """The global batch from every process's share, in the order of its positions (process r holds positions r,
    r + world size, ..., as ``TrainingData.batch`` deals them); alone, the share itself. Not differentiable."""
    if not _distributed():
        return share
    world = dist.get_world_size()
    counts = [torch.zeros((), dtype=torch.long, device=share.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor(len(share), device=share.device))
    padded = share.new_zeros((int(max(counts)), *share.shape[1:]))  # all_gather needs one shape everywhere
    padded[:len(share)] = share
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.stack([gathered[p % world][p // world] for p in range(int(sum(counts)))])


def own_share(batch: torch.Tensor) -> torch.Tensor:
    """This process's positions of a global batch (``gather_batch``'s inverse); alone, all of it."""
    return batch[dist.get_rank()::dist.get_world_size()] if _distributed() else batch


def broadcast_list(values: list[int], device: torch.device) -> list[int]:
    """The first process's ``values`` in every process (each must pass as many); alone, ``values``."""
    if not _distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.long, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


@dataclass(frozen=True)
class Schedule:
    """``constant`` steps at the full learning rate, then ``decay`` steps of linear decay to zero; with
    ``step_size``, the rate is multiplied by ``gamma`` every ``step_size`` steps instead (StepLR)."""

    constant: int
    decay: int
    step_size: int | None = None
    gamma: float = 0.1

    @property
    def total(self) -> int:
        return self.constant + self.decay

    def factor(self, step: int) -> float:
        if self.step_size:
            return self.gamma ** (step // self.step_size)
        return 1.0 - max(0, step - self.constant) / (self.decay + 1)


class FeatureTaps:
    """Keeps the outputs of named submodules from the last forward pass (teacher and student features)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"no submodule {missing[0]} to tap in {type(model).__name__}")
        self.names = names
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._keeper(n)) for n in names]

    def _keeper(self, name: str) -> Callable:
        def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[name] = output
        return keep

    def features(self) -> list[torch.Tensor]:
        return [self.outputs[n] for n in self.names]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class TeacherOutputs:
    """The teacher's output and tap features for a batch; with ``cache``, computed once per distinct input (GAN
    Compression's teacher, CAT's ground truth for single data)."""

    def __init__(self, teacher: nn.Module, taps: FeatureTaps, cache: bool) -> None:
        self.teacher, self.taps, self.cache = teacher, taps, cache
        self.kept: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def __call__(self, inputs: torch.Tensor, keys: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if not self.cache:
            with torch.no_grad():
                return self.teacher(inputs), self.taps.features()
        # One input at a time, so what is kept does not depend on the batch it first came in (a resumed run
        # meets its inputs in other company, and a conv's float sums depend on the batch size).
        for index in (i for i, key in enumerate(keys) if key not in self.kept):
            with torch.no_grad():
                output = self.teacher(inputs[index:index + 1])
            self.kept[keys[index]] = (output[0].clone(), [f[0].clone() for f in self.taps.features()])
        entries = [self.kept[key] for key in keys]
        return torch.stack([e[0] for e in entries]), [torch.stack([e[1][t] for e in entries])
                                                       for t in range(len(entries[0][1]))]


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """The module's parameters take no gradient inside the block (a generator loss through the discriminator)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class StepsInterrupted(Exception):
    """Ctrl-C stopped a stage after ``step`` of ``total`` steps, whose checkpoint is saved."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"step {step} of {total}")
        self.step, self.total = step, total


class StopRequest:
    """Within the block, a first Ctrl-C asks the training loop to stop after the step it is in (so a checkpoint
    holds a whole step, never half an optimiser update); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._ask)
        return self

    def _ask(self, signum: int, frame: object) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """Runs one stage's steps over a set of modules with one optimiser per group of them.

    ``groups`` maps an optimiser's name to its modules' names (Adam with the recipe's betas) or to an
    ``Optimizer``; the step's objectives are keyed by these names.
    """

    def __init__(self, stage_dir: Path, modules: dict[str, nn.Module], groups: dict[str, list[str] | Optimizer],
                 settings: TrainingSettings, schedule: Schedule, lr: float, processes: Processes,
                 log_file: Path, stage: str) -> None:
        self.stage_dir, self.modules, self.settings = stage_dir, modules, settings
        self.schedule, self.processes, self.log_file, self.stage = schedule, processes, log_file, stage
        specs = {name: spec if isinstance(spec, Optimizer) else Optimizer(tuple(spec)) for name, spec in groups.items()}
        self.base_lrs = {name: spec.lr or lr for name, spec in specs.items()}
        self.optimizers = {
            name: spec.build([p for m in spec.members for p in modules[m].parameters()], self.base_lrs[name], settings)
            for name, spec in specs.items()
        }
        self.members = {name: spec.members for name, spec in specs.items()}
        self.base_lr = lr
        self.step = 0
        if processes.is_main:
            log_file.parent.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.stage_dir / CHECKPOINT

    def autocast(self):
        """bfloat16 autocast on a GPU when the recipe asks for it; a no-op elsewhere."""
        if self.settings.amp and self.processes.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def resume(self) -> bool:
        """Load the stage's checkpoint if it has one; True when it did. Log lines of steps after it (a run
        killed between two checkpoints) are dropped, so the log never runs back."""
        loaded = self.checkpoint_path.is_file()
        if loaded:
            state = torch.load(self.checkpoint_path, map_location=self.processes.device, weights_only=True)
            for name, module in self.modules.items():
                module.load_state_dict(state["modules"][name])
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
            self.step = int(state["step"])
        if self.processes.is_main and self.log_file.is_file():
            lines = self.log_file.read_text().splitlines(keepends=True)
            kept = [line for line in lines if not self._logged_after(line, self.step)]
            if len(kept) < len(lines):
                staging = self.log_file.with_suffix(".tmp")
                staging.write_text("".join(kept))
                os.replace(staging, self.log_file)
        barrier(self.processes)
        return loaded

    def _logged_after(self, line: str, step: int) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return True  # a line cut by a kill
        return record.get("stage") == self.stage and record.get("step", 0) > step

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0); a kill mid-write leaves the previous one intact."""
        if self.processes.is_main:
            self.stage_dir.mkdir(parents=True, exist_ok=True)
            state = {"step": self.step, "modules": {n: m.state_dict() for n, m in self.modules.items()},
                     "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()}}
            staging = self.checkpoint_path.with_suffix(".tmp")
            torch.save(state, staging)
            os.replace(staging, self.checkpoint_path)
        barrier(self.processes)

    def run(self, training_step: Callable[[int], StepResult], progress: StepProgress | None = None) -> None:
        """Train from ``self.step`` to the end of the schedule."""
        for module in self.modules.values():
            module.train()
        started = time.perf_counter()
        with StopRequest() as stop:
            while self.step < self.schedule.total:
                self._train_step(training_step, progress, started)
                if self._agreed(stop.requested):
                    self.save()
                    raise StepsInterrupted(self.step, self.schedule.total)
        self.save()

    def _train_step(self, training_step: TrainingStep, progress: StepProgress | None, started: float) -> None:
        factor = self.schedule.factor(self.step)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lrs[name] * factor
        terms = self._updates(training_step)
        self.step += 1
        log_now = self.step % self.settings.log_every == 0 or self.step in (1, self.schedule.total)
        if log_now or progress:
            losses = self._mean_over_processes(terms)
            if log_now:
                self._log({"stage": self.stage, "step": self.step, "lr": self.base_lr * factor,
                           "seconds": round(time.perf_counter() - started, 3), **losses})
            if progress:
                progress(self.step, self.schedule.total, losses)
        if self.step % self.settings.checkpoint_every == 0 and self.step < self.schedule.total:
            self.save()

    def _agreed(self, flag: bool) -> bool:
        """Whether any process has the flag (every process must stop at the same step)."""
        if self.processes.world_size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.processes.device)
        dist.all_reduce(value)
        return bool(value.item())

    def _updates(self, training_step: TrainingStep) -> dict[str, torch.Tensor]:
        """One step: a single update of every optimiser, or each update the step yields, in its order."""
        with self.autocast():
            result = training_step(self.step)
        if isinstance(result, tuple):
            # The objectives touch disjoint parameters (the originals detach the fake images for the
            # discriminator and freeze it for the generator), so one backward serves them all.
            self._update(result[0], list(self.optimizers))
            return result[1]
        terms: dict[str, torch.Tensor] = {}
        while True:
            with self.autocast():
                update = next(result, None)
            if update is None:
                return terms
            objectives, logged = update
            if objectives:  # none: terms measured after the step's updates
                self._update(objectives, list(objectives))
            terms.update(logged)

    def _update(self, objectives: dict[str, torch.Tensor], names: list[str]) -> None:
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        sum(objectives.values()).backward()
        self._average_gradients([m for name in names for m in self.members[name]])
        for name in names:
            self.optimizers[name].step()

    def _average_gradients(self, members: list[str]) -> None:
        if self.processes.world_size == 1:
            return
        for module in (self.modules[m] for m in members):
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if not grads:
                continue
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.processes.world_size
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    def _mean_over_processes(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        values = torch.stack([t.detach().float() for t in terms.values()])
        if self.processes.world_size > 1:
            dist.all_reduce(values)
            values /= self.processes.world_size
        return {name: float(v) for name, v in zip(terms, values.tolist(), strict=True)}

    def _log(self, record: dict) -> None:
        if self.processes.is_main:
            with open(self.log_file, "a") as log:
                log.write(json.dumps(record) + "\n")
