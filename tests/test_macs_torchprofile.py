"""``macs_paper`` is torchprofile 0.0.1's count, checked against torchprofile 0.0.1 itself on every zoo architecture.

torchprofile traces a real forward pass, so by default each architecture is traced at a size that takes well
under a second: image nets at 32x32 (U-Nets with 5 instead of 8 downsamplings, which 32x32 needs), GauGANs
(whose input size their dataset fixes) at 1/32 of their widths. Every layer kind of each architecture is
still there. ``GZOO_FULL_MACS=1`` traces every zoo entry as zoo.yaml gives it instead (minutes on a CPU).
"""

import json
import os
import warnings
from math import prod

import pytest
import torch

from gzoo.metrics import count_macs
from gzoo.models import create_model
from gzoo.zoo import load_zoo

FULL = os.environ.get("GZOO_FULL_MACS") == "1"


def reduced(arch: str, args: dict, shape: tuple[int, ...]) -> tuple[str, dict, tuple[int, ...]]:
    """The architecture at a size torchprofile traces quickly (see the module docstring)."""
    if FULL:
        return arch, args, shape
    if "unet" in arch:
        return arch, {**args, "num_downs": 5}, (shape[0], 32, 32)
    if "spade" in arch:
        narrower = {**args, "ngf": max(1, args.get("ngf", 64) // 32)}
        if "config" in args:
            narrower["config"] = "_".join(str(max(1, int(c) // 32)) for c in args["config"].split("_"))
        return arch, narrower, shape
    return arch, args, (shape[0], 32, 32)


def zoo_architectures() -> list[tuple[str, dict, tuple[int, ...]]]:
    """Every measurable zoo entry's architecture, arguments and input, reduced, each once."""
    seen: dict[str, tuple[str, dict, tuple[int, ...]]] = {}
    for entry in load_zoo().entries.values():
        if entry.measurable:
            case = reduced(entry.arch, entry.arch_args, tuple(entry.input))
            seen.setdefault(json.dumps(case, sort_keys=True), case)
    return list(seen.values())


CASES = zoo_architectures()


def linear_as_addmm(node) -> int:
    # torchprofile 0.0.1 was written for torch 1.4, which traced nn.Linear to aten::addmm(bias, x, weight.t()),
    # and counts that addmm as n x m x p. Today's tracer records aten::linear, which 0.0.1 has no handler for.
    *batch, inputs = node.inputs[0].shape
    return prod(batch) * inputs * node.inputs[1].shape[0]


def torchprofile_macs(model: torch.nn.Module, example: torch.Tensor, monkeypatch) -> int:
    import torchprofile.profile
    from torchprofile.version import __version__

    assert __version__ == "0.0.1", (f"macs_paper is torchprofile 0.0.1's count, but torchprofile {__version__} is "
                                    "installed; pip install torchprofile==0.0.1")
    monkeypatch.setattr(torchprofile.profile, "handlers",
                        (*torchprofile.profile.handlers, ("aten::linear", linear_as_addmm)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convs: on a busy machine, waiting for a second thread costs seconds
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # "No handlers found" for the operators 0.0.1 counts as free
            return int(torchprofile.profile.profile_macs(model, (example,)))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("arch", "args", "shape"), CASES,
                         ids=[f"{a}-{'-'.join(map(str, k.values())) or 'default'}-{'x'.join(map(str, s))}"
                              for a, k, s in CASES])
def test_macs_paper_equals_torchprofile_0_0_1(arch, args, shape, monkeypatch):
    torch.manual_seed(0)
    model = create_model(arch, **args).eval()
    example = torch.rand(1, *shape) * 2 - 1
    with torch.device("meta"):
        ours = count_macs(create_model(arch, **args).eval(), torch.zeros(1, *shape)).macs_paper
    assert ours == torchprofile_macs(model, example, monkeypatch)


def test_every_zoo_architecture_is_checked():
    measurable = {entry.arch for entry in load_zoo().entries.values() if entry.measurable}
    assert measurable == {arch for arch, _, _ in CASES}


def test_the_inception_spade_counts_as_torchprofile_0_0_1(monkeypatch):
    """CAT's GauGAN students are zoo entries without widths (not measurable), so their architecture is checked
    here: a teacher and a pruned student with emptied blocks and norms, on a cityscapes label map."""
    from test_models_spade_cat import pruned_spade_widths

    example = torch.zeros(1, 36, 256, 512)
    example[:, 3] = 1
    for args in ({"ngf": 4}, {"widths": pruned_spade_widths(), "activation": "relu"}):
        model = create_model("cat_inception_spade_generator", **args).eval()
        assert count_macs(model, example).macs_paper == torchprofile_macs(model, example, monkeypatch)
