"""The method interface: what a compression method declares so that the shared pipeline can run it.

A method is one file in gzoo/compress/ that builds a ``Method`` and registers it under its name. It declares its
recipe sections (dataclasses, validated like every section), the teacher architectures it compresses, its stages
in order for a given recipe, one function per stage, and an ``export`` stage that says what to write: the
student's architecture, arguments, weights and lineage. The pipeline (``gzoo.compress.pipeline``) owns the rest:
the run directory, resume, seeding, the teacher, the data, writing the model directory and the final evaluation.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gzoo.compress.engine import TrainingSettings
from gzoo.data.packing import Packed

# A stage: (the pipeline's Run, the results of the stages before it) -> this stage's result, a JSON-able dict
# (the export stage: an Exported). Typed loosely here because the pipeline and the recipe import this module.
Stage = Callable[[Any, dict[str, dict]], Any]


@dataclass(frozen=True)
class Exported:
    """What a method's ``export`` stage hands the pipeline to write as the student's model directory."""

    arch: str
    arch_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    input_size: tuple[int, int]  # height, width the student was trained and is evaluated at
    lineage: dict[str, Any] = field(default_factory=dict)  # method facts kept in config.json (e.g. the search)
    summary: dict[str, Any] = field(default_factory=dict)  # method facts for the run's summary (e.g. the config)
    packed: Packed | None = None  # a packed form to write instead of state_dict (gzoo.data.packing)


@dataclass(frozen=True)
class Method:
    name: str
    teachers: tuple[str, ...]  # the architectures it compresses; empty: any architecture gzoo loads
    stages: Callable[[Any], list[str]]  # a Recipe's stages, in order, ending with "export"
    run: dict[str, Stage]  # one function per stage name; "export" returns an Exported
    sections: dict[str, type] = field(default_factory=dict)  # its own recipe sections, in the order files write them
    training: type = TrainingSettings  # its `training` section: the engine's settings and the method's own keys
    check: Callable[[Any], None] = lambda recipe: None  # a Recipe's combinations a type check cannot see
    # What a run needs besides its data and teacher (e.g. a feature network's weights), checked before training
    check_inputs: Callable[[Any], None] = lambda recipe: None
    # The recipe against the loaded teacher (its layers), before the run directory is made or anything trains.
    check_model: Callable[[Any, torch.nn.Module], None] = lambda recipe, model: None
    teacher_hint: str = ""  # what to give instead, when a teacher is refused
    needs_teacher: Callable[[Any], bool] = lambda recipe: True  # False: a Recipe it can run with no teacher

    def accepts(self, arch: str) -> bool:
        return not self.teachers or arch in self.teachers


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` known to recipes by its name."""
    METHODS[method.name] = method
    return method
