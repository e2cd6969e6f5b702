"""The ``cat`` converter: CAT inception generator checkpoints, teachers and pruned students, into gzoo."""

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from gzoo import api
from gzoo.errors import GzooError
from gzoo.models import create_model


def pruned_widths() -> dict:
    """A student as CAT's pruning leaves one: narrower convs, branches gone, one block emptied."""
    blocks = [{"res": [0, 30, 12], "dw": [20, 0, 5]}, {"res": [0, 0, 0], "dw": [0, 0, 0]},
              {"res": [8, 0, 16], "dw": [0, 4, 0]}]
    blocks += [{"res": [8, 16, 0], "dw": [4, 4, 4]}] * 6
    return {"stem": 24, "down": [40, 96], "blocks": blocks, "up": [48, 16]}


def save_as_cat(model: nn.Module, path: Path) -> Path:
    """Weights and statistics moved off their initial values (so a misplaced tensor shows), saved as CAT does
    under DataParallel."""
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.2 * torch.rand_like(tensor))  # a positive shift keeps running variances positive
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    return path


def arch_args(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())["arch_args"]


def assert_same_outputs(converted: Path, original: nn.Module) -> None:
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(api.load(converted)(x), original.eval()(x), atol=1e-6, rtol=0)


def test_the_teacher_converts_by_ngf_and_gives_the_same_outputs(tmp_path):
    teacher = create_model("cat_inception_generator")
    directory = api.convert(save_as_cat(teacher, tmp_path / "latest_net_G.pth"), "cat", tmp_path / "out")
    assert arch_args(directory) == {"ngf": 64, "n_blocks": 9, "norm": "instance_affine", "input_nc": 3,
                                    "output_nc": 3}
    assert_same_outputs(directory, teacher)


def test_a_pruned_student_converts_with_its_widths_read_off_the_shapes(tmp_path):
    student = create_model("cat_inception_generator", widths=pruned_widths())
    checkpoint = save_as_cat(student, tmp_path / "latest_net_G.pth")
    directory = api.convert(checkpoint, "cat", tmp_path / "out")
    assert api.load(directory).width_config() == student.width_config() == pruned_widths()
    assert_same_outputs(directory, student)

    # The user's arguments win over the shapes; ones that do not fit name the first bad tensor.
    with pytest.raises(GzooError, match=r"tensor 'down_sampling.1.weight' has shape \(24, 3, 7, 7\), the "
                                        r"architecture expects \(64, 3, 7, 7\)"):
        api.convert(checkpoint, "cat", tmp_path / "wrong", arch_args={"ngf": 64})
    assert not (tmp_path / "wrong").exists()


def test_a_batch_norm_generator_converts_with_its_running_statistics(tmp_path):
    teacher = create_model("cat_inception_generator", ngf=16, norm="batch")
    directory = api.convert(save_as_cat(teacher, tmp_path / "latest_net_G.pth"), "cat", tmp_path / "out")
    assert arch_args(directory)["norm"] == "batch"
    assert_same_outputs(directory, teacher)


def test_a_checkpoint_that_is_not_a_cat_generator_is_one_clear_error(tmp_path):
    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save(create_model("resnet_generator", ngf=8).state_dict(), checkpoint)
    with pytest.raises(GzooError, match="not a CAT inception generator") as error:
        api.convert(checkpoint, "cat", tmp_path / "out")
    assert "\n" not in str(error.value)


def test_branches_out_of_kernel_order_are_refused(tmp_path):
    # As a student of CAT run with --kernel_sizes 3 1 5 would be saved: the last block's 3x3 branch first.
    state = create_model("cat_inception_generator", widths=pruned_widths()).state_dict()
    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save({re.sub(r"^features\.8\.res_ops\.([01])\.", lambda m: f"features.8.res_ops.{1 - int(m[1])}.", k): v
                for k, v in state.items()}, checkpoint)
    with pytest.raises(GzooError, match="branch features.8.res_ops.1 has a 1x1 kernel"):
        api.convert(checkpoint, "cat", tmp_path / "out")


def assert_same_gaugan_outputs(converted: Path, original: nn.Module) -> None:
    from gzoo.models.spade import label_map_to_input

    torch.manual_seed(1)
    seg = label_map_to_input(torch.randint(0, 35, (256, 512)), "cityscapes", torch.randint(0, 4, (256, 512)))
    with torch.no_grad():
        torch.testing.assert_close(api.load(converted)(seg), original.eval()(seg), atol=0, rtol=0)


def test_an_inception_spade_teacher_converts_by_ngf_with_its_training_activation(tmp_path):
    teacher = create_model("cat_inception_spade_generator", ngf=4)
    directory = api.convert(save_as_cat(teacher, tmp_path / "latest_net_G.pth"), "cat", tmp_path / "out")
    assert json.loads((directory / "config.json").read_text())["arch"] == "cat_inception_spade_generator"
    assert arch_args(directory) == {"dataset": "cityscapes", "ngf": 4, "activation": "leaky_relu"}
    assert_same_gaugan_outputs(directory, teacher)


def test_a_pruned_inception_spade_student_converts_with_its_widths_and_relu(tmp_path):
    from test_models_spade_cat import pruned_spade_widths

    student = create_model("cat_inception_spade_generator", widths=pruned_spade_widths(), activation="relu")
    directory = api.convert(save_as_cat(student, tmp_path / "latest_net_G.pth"), "cat", tmp_path / "out")
    assert arch_args(directory) == {"dataset": "cityscapes", "widths": pruned_spade_widths(), "activation": "relu"}
    assert_same_gaugan_outputs(directory, student)
