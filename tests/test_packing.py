"""Packed model directories: the int8 format on a real network, written, read back and described by gzoo info."""

import json

import pytest
import torch

from gzoo import api
from gzoo.data.modeldir import PACKED_WEIGHTS, WEIGHTS, save_model_dir
from gzoo.data.packing import Packed, int8
from gzoo.errors import GzooError
from gzoo.models import create_model, load_model_dir
from gzoo.models.fritz import fritz_style_net

SMALL = {"alpha": 0.3, "n_blocks": 3, "small": True}


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Weights of a trained net's spread: different scales per channel, as trained convs have."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            channel_scale = torch.rand(parameter.shape[:1]).view(-1, *[1] * (parameter.dim() - 1))
            parameter.copy_(torch.randn_like(parameter) * channel_scale)
    return model


def test_int8_round_trip_is_the_quantizer_s_weights_within_half_a_step(tmp_path):
    model = _trained_like(fritz_style_net(**SMALL))
    packed = int8.pack(model)
    directory = save_model_dir(tmp_path / "q8", packed, {"arch": "fritz_style_net", "arch_args": SMALL})
    assert not (directory / WEIGHTS).exists() and (directory / PACKED_WEIGHTS).is_file()
    assert json.loads((directory / "config.json").read_text())["packing"] == "int8"
    loaded = load_model_dir(directory).state_dict()
    for key, dense in model.state_dict().items():
        if key in json.loads(packed.metadata["axes"]):
            step = dense.flatten(1).abs().amax(1) / 127
            error = (loaded[key] - dense).flatten(1).abs().amax(1)
            assert torch.all(error <= step * 0.5 * 1.01 + 1e-6), key  # fp16 scale: 0.1% slack
            assert torch.equal(loaded[key], int8.decode(packed.tensors, packed.metadata)[key])
        else:
            assert torch.equal(loaded[key], dense.half().float()), key


def test_transposed_conv_scales_follow_its_output_channels():
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 6, 3))
    torch.nn.init.normal_(model[0].weight)
    packed = int8.pack(model)
    assert packed.tensors["0.weight" + int8.SCALE].shape == (6,)


def test_gzoo_info_reports_the_packed_file_beside_the_dense_size(tmp_path):
    model = fritz_style_net(**SMALL)
    directory = save_model_dir(tmp_path / "q8", int8.pack(model), {"arch": "fritz_style_net", "arch_args": SMALL})
    size = api.directory_info(directory)["size"]
    assert size["packed_bytes"] == size["file_bytes"] == (directory / PACKED_WEIGHTS).stat().st_size
    assert size["dense_bytes"] == 11_868 * 4
    assert size["packed_bytes"] < size["dense_bytes"] / 2.5


def test_a_paper_accounting_is_reported_as_packed_bytes(tmp_path):
    tensors = int8.pack(fritz_style_net(**SMALL))
    packed = Packed(tensors.format, tensors.tensors, tensors.metadata, accounted_bytes=1234)
    directory = save_model_dir(tmp_path / "q8", packed, {"arch": "fritz_style_net", "arch_args": SMALL})
    size = api.directory_info(directory)["size"]
    assert size["packed_bytes"] == 1234 and size["file_bytes"] == (directory / PACKED_WEIGHTS).stat().st_size


def test_an_unknown_format_names_the_formats_gzoo_reads(tmp_path):
    model = create_model("fritz_style_net", **SMALL)
    packed = Packed("zip9", model.state_dict())
    directory = save_model_dir(tmp_path / "odd", packed, {"arch": "fritz_style_net", "arch_args": SMALL})
    with pytest.raises(GzooError, match=r"unknown packed format 'zip9' \(this gzoo reads: .*int8"):
        load_model_dir(directory)
