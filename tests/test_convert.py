"""Converters into gzoo model directories: real vintagify weights, GAN Compression/OMGD layouts, safety."""

import json
from pathlib import Path

import pytest
import torch

from gzoo import api
from gzoo.errors import GzooError
from gzoo.models import create_model
from gzoo.zoo.converters import get_converter

VINTAGIFY_WEIGHTS = "resources/G_A2B_epoch33.pth"


def vintagify_checkpoint() -> Path:
    import vintagify

    return Path(vintagify.__file__).parent / VINTAGIFY_WEIGHTS


def test_vintagify_converts_and_gives_the_packages_outputs(tmp_path):
    from photos import photo
    from vintagify.generator import ResnetGenerator as VintagifyGenerator

    directory = api.convert(vintagify_checkpoint(), "vintagify", tmp_path / "vintagify")
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    ours = api.load(directory)
    reference = VintagifyGenerator().eval()
    reference.load_state_dict(torch.load(vintagify_checkpoint(), map_location="cpu", weights_only=True))
    x = photo(256)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=0)
    config = json.loads((directory / "config.json").read_text())
    assert config["arch_args"] == {"norm": "instance_affine"} and len(config["source"]["sha256"]) == 64


@pytest.mark.parametrize(("arch", "args"), [
    ("sub_mobile_resnet_generator", {"config": "16_16_32_16_32_32_16_16"}),
    ("sub_mobile_resnet_generator", {"config": "24_24_40_56_24_56_16_40"}),
    ("mobile_resnet_generator", {"ngf": 16}),
    ("resnet_generator", {"ngf": 16}),
    ("unet_generator", {"ngf": 8}),
    ("omgd_deep_unet_generator", {"ngf": 8}),
    ("omgd_deep_mobile_resnet_generator", {"ngf": 8}),
])
def test_original_layouts_are_recognised_from_their_tensors(tmp_path, arch, args):
    torch.manual_seed(0)
    original = create_model(arch, **args).eval()
    checkpoint = tmp_path / "latest_net_G.pth"
    # As the original code saves it: a plain state dict, here with DataParallel's prefix.
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, checkpoint)
    fmt = "omgd" if arch.startswith(("unet", "omgd")) else "gan-compression"
    converted = get_converter(fmt)(checkpoint, None, {})
    assert converted.arch == arch and all(converted.arch_args[k] == v for k, v in args.items())
    loaded = api.load(api.convert(checkpoint, fmt, tmp_path / "out"))
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x), atol=1e-6, rtol=0)


def gan_compression_spade_layout(arch: str, ngf: int, label_nc: int, config: str | None = None) -> dict:
    """Some keys and shapes of GAN Compression's SPADEGenerator and (Sub)MobileSPADEGenerator state dicts
    (models/modules/spade_architecture, norm_G spadesyncbatch3x3), as its torch.save(net.state_dict()) writes
    them, and how many keys they hold: 198 for the original GauGAN, 270 for the mobile ones."""
    c = [int(v) for v in config.split("_")] if config else [ngf] * 8
    hidden, fc = 2 * c[1], 16 * c[0]
    layout = {"fc.weight": (fc, label_nc, 3, 3), "head_0.conv_0.weight": (16 * c[1], fc, 3, 3),
              "head_0.norm_0.param_free_norm.running_mean": (16 * ngf,),
              "head_0.norm_0.param_free_norm.num_batches_tracked": (),
              "head_0.norm_0.mlp_shared.0.weight": (hidden, label_nc, 3, 3),
              "up_0.conv_s.weight": (8 * c[4], fc, 1, 1), "up_0.norm_1.param_free_norm.running_var": (8 * ngf,),
              "conv_img.weight": (3, c[7], 3, 3), "keys": 198 if arch == "spade_generator" else 270}
    if arch == "spade_generator":
        layout["head_0.norm_0.mlp_gamma.weight"] = (fc, hidden, 3, 3)
    else:  # separable: depthwise conv, instance norm (no tensors), pointwise conv
        layout["head_0.norm_0.mlp_gamma.conv.0.weight"] = (hidden, 1, 3, 3)
        layout["head_0.norm_0.mlp_gamma.conv.2.weight"] = (fc, hidden, 1, 1)
    return layout


@pytest.mark.parametrize(("arch", "args"), [
    ("spade_generator", {"dataset": "cityscapes", "ngf": 4}),
    ("spade_generator", {"dataset": "coco-stuff", "ngf": 4}),
    ("mobile_spade_generator", {"dataset": "cityscapes", "ngf": 4}),
    # GAN Compression's cityscapes and Fast GAN Compression's COCO-Stuff configs, each number divided by 8
    ("sub_mobile_spade_generator", {"dataset": "cityscapes", "ngf": 6, "config": "4_5_5_4_5_3_4_3"}),
    ("sub_mobile_spade_generator", {"dataset": "coco-stuff", "ngf": 8, "config": "5_4_4_5_4_5_3_3"}),
])
def test_gaugan_layouts_are_recognised_from_their_tensors(tmp_path, arch, args):
    torch.manual_seed(0)
    original = create_model(arch, **args).eval()
    for name, buffer in original.named_buffers():
        if "running" in name:  # trained statistics, not the identity a new batch norm starts as
            buffer.uniform_(0.5, 1.5)
    state = original.state_dict()
    label_nc = 36 if args["dataset"] == "cityscapes" else 184
    layout = gan_compression_spade_layout(arch, args["ngf"], label_nc, args.get("config"))
    assert len(state) == layout.pop("keys")
    assert {key: tuple(state[key].shape) for key in layout} == layout
    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save(state, checkpoint)

    converted = get_converter("gan-compression")(checkpoint, None, {})
    assert (converted.arch, converted.arch_args) == (arch, args)
    loaded = api.load(api.convert(checkpoint, "gan-compression", tmp_path / "out"))
    # The same class with the same tensors (a forward pass at 512x256 would take seconds): equal outputs.
    assert type(loaded) is type(original)
    converted_state = loaded.state_dict()
    assert converted_state.keys() == state.keys()
    assert all(torch.equal(converted_state[key], tensor) for key, tensor in state.items())


def test_a_gaugan_for_an_unknown_dataset_names_its_label_channels(tmp_path):
    state = create_model("spade_generator", ngf=2).state_dict()
    state["fc.weight"] = torch.zeros(32, 151, 3, 3)  # ADE20K: 150 labels + don't care, no instance map
    torch.save(state, tmp_path / "latest_net_G.pth")
    with pytest.raises(GzooError, match=r"fc takes 151 label channels.*cityscapes \(36\), coco-stuff \(184\)"):
        api.convert(tmp_path / "latest_net_G.pth", "gan-compression", tmp_path / "out")


def test_a_config_that_does_not_fit_the_checkpoint_names_the_problem(tmp_path):
    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save(create_model("sub_mobile_resnet_generator", config="16_16_32_16_32_32_16_16").state_dict(), checkpoint)
    with pytest.raises(GzooError, match="no architecture fits its tensors"):
        api.convert(checkpoint, "gan-compression", tmp_path / "out", arch_args={"config": "32_32_48_32_48_48_16_16"})
    with pytest.raises(GzooError, match=r"tensor 'model.1.weight' has shape \(16, 3, 7, 7\), the architecture expects"):
        api.convert(checkpoint, "state-dict", tmp_path / "out", arch="sub_mobile_resnet_generator",
                    arch_args={"config": "32_32_48_32_48_48_16_16"})
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_state_dict_format_needs_an_architecture_and_reads_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = create_model("fritz_style_net", alpha=0.25)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(GzooError, match="needs --arch"):
        api.convert(tmp_path / "w.safetensors", "state-dict", tmp_path / "out")
    directory = api.convert(tmp_path / "w.safetensors", "state-dict", tmp_path / "out", arch="fritz_style_net",
                            arch_args={"alpha": 0.25})
    assert api.directory_info(directory)["params"] == 108_374


class RunsCode:
    """Pickled, this object would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(1), "hook": RunsCode(marker)}, checkpoint)
    with pytest.raises(GzooError, match="refused to load"):
        api.convert(checkpoint, "gan-compression", tmp_path / "out")
    assert not marker.exists()


def test_unknown_format_suggests_the_known_ones(tmp_path):
    torch.save({}, tmp_path / "x.pth")
    with pytest.raises(GzooError, match="unknown checkpoint format 'gan-compresion' \\(did you mean gan-compression"):
        api.convert(tmp_path / "x.pth", "gan-compresion", tmp_path / "out")


def test_convert_cli_one_line_errors(run_gzoo, tmp_path):
    result = run_gzoo("convert", str(tmp_path / "missing.pth"), "--from", "gan-compression", "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    result = run_gzoo("convert", str(vintagify_checkpoint()), "--from", "vintagify", "-o", str(tmp_path / "v"))
    assert result.returncode == 0, result.stderr
    info = json.loads(run_gzoo("info", str(tmp_path / "v"), "--json").stdout)
    assert info["params"] == 11_388_675 and info["size"]["dense_bytes"] > 11_388_675 * 4


def test_a_photo_is_named_as_no_checkpoint_before_format_and_output_are_asked_for(gzoo_main, tmp_path):
    from photos import photo_crops, write_images

    write_images(tmp_path, photo_crops(("coffee",), 64, 1))
    photo = tmp_path / "0000.png"
    code, out, err = gzoo_main("convert", str(photo))
    assert (code, out) == (2, "")
    assert err == f"gzoo: error: {photo} is a PNG image, not a checkpoint; give the original's weights file (.pth, " \
                  ".safetensors, .onnx); images go to `gzoo eval --data` or `gzoo fid`\n"
    code, _, err = gzoo_main("convert", str(photo), "--from", "gan-compression", "-o", str(tmp_path / "out"))
    assert code == 2 and "is a PNG image, not a checkpoint" in err and not (tmp_path / "out").exists()


def test_a_file_that_torch_did_not_save_is_not_a_checkpoint_and_format_and_output_are_asked_for(gzoo_main, tmp_path):
    notes = tmp_path / "notes.pth"
    notes.write_text("weights: see the paper")
    code, _, err = gzoo_main("convert", str(notes), "--from", "omgd", "-o", str(tmp_path / "out"))
    assert code == 2 and err == f"gzoo: error: {notes} is not a PyTorch checkpoint (it starts with b'weig', not as " \
                                "torch.save writes a file); give a .pth file saved by torch.save, or check --from\n"
    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save({}, checkpoint)
    assert gzoo_main("convert", str(checkpoint))[2].startswith(
        f"gzoo: error: give the format of {checkpoint} with --from: one of cat, gan-compression, kill-the-bits, ")
    assert gzoo_main("convert", str(checkpoint), "--from", "omgd")[2] == \
        "gzoo: error: give the model directory to write with -o DIR\n"
