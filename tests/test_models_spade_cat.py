"""SPADE (GauGAN) and CAT inception generators: published params/MACs (REFERENCE.md), structure, bad input."""

import io
import json

import pytest
import torch

from gzoo.errors import GzooError
from gzoo.metrics import count_macs, count_params
from gzoo.models import create_model
from gzoo.models.spade import label_map_to_input

# (arch, arch_args, input (C, H, W), params, paper-convention MACs) as REFERENCE.md prints them.
PUBLISHED = [
    ("spade_generator", {}, (36, 256, 512), 93.0e6, 281e9),
    ("spade_generator", {"dataset": "coco-stuff"}, (184, 256, 256), 97.5e6, 191e9),
    ("sub_mobile_spade_generator", {"config": "32_40_40_32_40_24_32_24", "ngf": 48}, (36, 256, 512), 21.0e6, 31.2e9),
    ("sub_mobile_spade_generator", {"config": "32_32_32_48_32_24_24_32", "ngf": 64}, (36, 256, 512), 20.2e6, 31.3e9),
    ("sub_mobile_spade_generator", {"config": "40_32_32_40_32_40_24_24", "ngf": 64, "dataset": "coco-stuff"},
     (184, 256, 256), 26.0e6, 35.5e9),
    ("cat_inception_generator", {}, (3, 256, 256), 8.15e6, 43.53e9),
]


@pytest.mark.parametrize(("arch", "args", "shape", "params", "macs"), PUBLISHED,
                         ids=[f"{a}-{'-'.join(map(str, k.values())) or 'default'}" for a, k, *_ in PUBLISHED])
def test_published_params_and_macs(arch, args, shape, params, macs):
    # One traced forward pass per model: GauGAN at 512x256 takes seconds on a CPU.
    model = create_model(arch, **args).eval()
    assert count_params(model) == pytest.approx(params, rel=0.005)
    assert count_macs(model, torch.zeros(1, *shape)).macs_paper == pytest.approx(macs, rel=0.02)


def test_spade_key_names_follow_gan_compression():
    keys = set(create_model("mobile_spade_generator", ngf=4).state_dict())
    assert {"fc.weight", "head_0.conv_0.weight", "head_0.norm_0.param_free_norm.running_mean",
            "head_0.norm_0.mlp_shared.0.weight", "head_0.norm_0.mlp_gamma.conv.0.weight",
            "head_0.norm_1.mlp_beta.conv.2.bias", "up_0.conv_s.weight", "up_0.norm_s.mlp_shared.0.bias",
            "up_3.conv_1.bias", "conv_img.weight"} <= keys
    assert not any(k.startswith(("head_0.conv_s", "G_middle_1.norm_s")) for k in keys)
    # The original GauGAN's gamma/beta are plain 3x3 convs.
    assert "head_0.norm_0.mlp_gamma.weight" in create_model("spade_generator", ngf=4).state_dict()


def test_sub_mobile_spade_widths_follow_the_config_and_keep_full_width_statistics():
    model = create_model("sub_mobile_spade_generator", config="32_40_40_32_40_24_32_24", ngf=48)
    assert model.fc.out_channels == 16 * 32
    assert [getattr(model, b).conv_0.out_channels for b in ("head_0", "G_middle_1", "up_0", "up_1", "up_3")] == \
        [16 * 40, 16 * 32, 8 * 40, 4 * 24, 24]
    assert model.up_2.norm_0.mlp_shared[0].out_channels == 2 * 32
    # As in GAN Compression's exported models, batch norm statistics stay at the width of the ngf-48 network.
    assert model.head_0.norm_0.param_free_norm.running_mean.shape == (16 * 48,)
    assert model.up_1.norm_1.param_free_norm.running_mean.shape == (4 * 48,)


def test_spectral_norm_is_removable_and_leaves_the_plain_keys():
    plain = create_model("spade_generator", ngf=4)
    spectral = create_model("spade_generator", ngf=4, spectral_norm=True)
    assert "up_0.conv_s.weight_orig" in spectral.state_dict()
    assert count_params(spectral) == count_params(plain)
    spectral.remove_spectral_norm()
    assert set(spectral.state_dict()) == set(plain.state_dict())


def test_spade_supernet_subnet_gives_the_supernet_outputs():
    torch.manual_seed(0)
    supernet = create_model("super_mobile_spade_generator", ngf=4)
    for name, buffer in supernet.named_buffers():
        if "running" in name:  # statistics other than (0, 1), so slicing them matters
            buffer.copy_(torch.rand_like(buffer) + 0.5)
    supernet.eval()
    seg = label_map_to_input(torch.randint(0, 35, (256, 512)), "cityscapes", torch.randint(0, 3, (256, 512)))
    config = "3_2_4_1_3_2_4_2"
    supernet.set_config(config)
    subnet = supernet.extract_subnet(config).eval()
    with torch.no_grad():
        torch.testing.assert_close(subnet(seg), supernet(seg), atol=1e-5, rtol=0)
    assert count_params(subnet) == count_params(create_model("sub_mobile_spade_generator", config=config, ngf=4))
    supernet.set_config(None)
    assert count_params(supernet) == count_params(create_model("mobile_spade_generator", ngf=4))


def test_label_map_to_input_makes_one_hot_labels_and_instance_edges():
    labels = torch.zeros(4, 6, dtype=torch.long)
    labels[:, 3:] = 7
    instance = torch.zeros(4, 6, dtype=torch.long)
    instance[2:, :] = 1
    seg = label_map_to_input(labels, "cityscapes", instance)
    assert seg.shape == (1, 36, 4, 6)
    assert torch.equal(seg[0, :35].sum(0), torch.ones(4, 6)) and seg[0, 7, 0, 3] == 1 and seg[0, 0, 0, 3] == 0
    assert torch.equal(seg[0, 35], torch.tensor([[0.0] * 6, [1.0] * 6, [1.0] * 6, [0.0] * 6]))
    # COCO-Stuff: label 255 ("don't care") is the last label channel, before the edges.
    coco = label_map_to_input(torch.full((1, 1, 2, 2), 255), "coco-stuff", torch.zeros(2, 2, dtype=torch.int32))
    assert coco.shape == (1, 184, 2, 2) and coco[0, 182].sum() == 4


def test_cat_teacher_has_six_branches_of_42_and_cat_key_names():
    model = create_model("cat_inception_generator")
    block = model.features[0]
    assert [op[1][0].out_channels for op in block.res_ops] == [42] * 3
    assert [op[0][0].out_channels for op in block.dw_ops] == [42] * 3
    assert [op[2][0].groups for op in block.dw_ops] == [42] * 3
    keys = set(model.state_dict())
    assert {"down_sampling.1.weight", "down_sampling.8.bias", "features.0.res_ops.2.1.0.weight",
            "features.0.res_ops.2.4.weight", "features.0.dw_ops.1.2.0.weight", "features.8.pw_bn.weight",
            "up_sampling.0.weight", "up_sampling.7.bias"} <= keys


def pruned_widths() -> dict:
    blocks = [{"res": [0, 30, 12], "dw": [20, 0, 5]}, {"res": [0, 0, 0], "dw": [0, 0, 0]}]
    blocks += [{"res": [8, 16, 0], "dw": [4, 4, 4]}] * 7
    return {"stem": 24, "down": [40, 96], "blocks": blocks, "up": [48, 16]}


def expected_params(widths: dict) -> int:
    """Parameters with affine instance norm: every conv has a bias, every norm a scale and a shift."""
    def conv(cin, cout, k, groups=1):
        return cin // groups * cout * k * k + cout

    stem, (d1, d2), (u1, u2) = widths["stem"], widths["down"], widths["up"]
    total = conv(3, stem, 7) + conv(stem, d1, 3) + conv(d1, d2, 3) + conv(d2, u1, 3) + conv(u1, u2, 3)
    total += 2 * (stem + d1 + d2 + u1 + u2) + conv(u2, 3, 7)
    for block in widths["blocks"]:
        total += 2 * d2  # pw_bn
        for c, k in zip(block["res"], (1, 3, 5), strict=True):
            if c:
                total += conv(d2, c, k) + 2 * c + conv(c, d2, k)
        for c, k in zip(block["dw"], (1, 3, 5), strict=True):
            if c:
                total += conv(d2, c, 1) + 2 * c + conv(c, c, k, groups=c) + 2 * c + conv(c, d2, 1)
    return total


def test_pruned_cat_student_builds_counts_saves_and_reloads():
    torch.manual_seed(0)
    widths = pruned_widths()
    student = create_model("cat_inception_generator", widths=widths)
    assert expected_params(create_model("cat_inception_generator").width_config()) == 8_154_255
    assert count_params(student) == expected_params(widths)
    # Empty branches are absent: the first dense branch of block 0 is its 3x3 one.
    assert len(student.features[0].res_ops) == 2 and student.features[0].res_ops[0][4].kernel_size == (3, 3)
    assert len(student.features[1].res_ops) == len(student.features[1].dw_ops) == 0
    assert 0 < count_macs(student.eval(), torch.zeros(1, 3, 256, 256)).macs_paper < 43.53e9 / 4

    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1 * torch.randn_like(p))
    buffer = io.BytesIO()
    torch.save(student.state_dict(), buffer)
    config = json.loads(json.dumps(student.width_config()))
    assert config == widths
    buffer.seek(0)
    reloaded = create_model("cat_inception_generator", widths=config)
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), student(x))


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 35, 256, 512), "takes a one-hot label map of shape (B, 36, 256, 512)"),
    ((1, 36, 256, 256), "takes a one-hot label map of shape (B, 36, 256, 512)"),
    ((36, 256, 512), "label_map_to_input"),
])
def test_spade_refuses_a_wrong_label_map_in_one_line(shape, message):
    model = create_model("sub_mobile_spade_generator", config="8_8_8_8_8_8_8_8", ngf=8)
    with pytest.raises(ValueError) as error:
        model(torch.zeros(shape))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("arch", "args", "message"), [
    ("spade_generator", {"dataset": "ade20k"}, "dataset must be one of cityscapes, coco-stuff"),
    ("sub_mobile_spade_generator", {"config": "64_8_8_8_8_8_8_8", "ngf": 48}, "wider than ngf 48"),
    ("super_mobile_spade_generator", {"ngf": 0}, "ngf must be a positive integer"),
    ("cat_inception_generator", {"widths": {"stem": 8, "down": [8, 8], "blocks": []}},
     "widths must be a dict with exactly the keys stem, down, blocks, up"),
    ("cat_inception_generator", {"widths": {**pruned_widths(), "down": [40, -1]}},
     "widths: down must be a list of 2 positive integers"),
    ("cat_inception_generator", {"widths": {**pruned_widths(), "blocks": [{"res": [1, 2], "dw": [0, 0, 0]}]}},
     "blocks[0].res must be a list of 3 non-negative integers"),
    ("cat_inception_generator", {"widths": pruned_widths(), "n_blocks": 6}, "pass n_blocks=9"),
])
def test_bad_architecture_requests_are_one_clear_error(arch, args, message):
    with pytest.raises(GzooError) as error:
        create_model(arch, **args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_label_map_to_input_names_the_problem():
    with pytest.raises(ValueError, match="label ids run from 0 to 34"):
        label_map_to_input(torch.full((4, 4), 40), "cityscapes", torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="instance is missing"):
        label_map_to_input(torch.zeros(4, 4, dtype=torch.long), "cityscapes")


# --- CAT's inception SPADE (GauGAN) -----------------------------------------------------------------------------

def test_cat_inception_spade_teacher_counts_as_the_original_class():
    """Counted on snap-research/CAT's InceptionSPADEGenerator (at 1dbd048, built from its code with the scripts'
    options: ngf 64, spadesyncbatch3x3, kernel sizes 1 3 5, reduction 6, cityscapes): 55,592,325 parameters;
    gzoo's paper convention 109,805,760,288 MACs; CAT's own profiler (utils/model_profiling.py, convs only: it
    skips SPADE's modulating multiply) 109,773,614,880, gzoo's true MACs. The float32 outputs of the two classes
    on the same weights were equal bit for bit."""
    model = create_model("cat_inception_spade_generator")
    assert count_params(model) == 55_592_325
    with torch.device("meta"):
        counted = count_macs(create_model("cat_inception_spade_generator").eval(), torch.zeros(1, 36, 256, 512))
    assert (counted.macs_paper, counted.macs) == (109_805_760_288, 109_773_614_880)
    # The multiply the paper convention adds: one per element of every block's input, (channels, height, width).
    inputs = [(1024, 4, 8), (1024, 8, 16), (1024, 16, 32), (1024, 32, 64), (512, 64, 128), (256, 128, 256),
              (128, 256, 512)]
    assert counted.macs_paper - counted.macs == sum(c * h * w for c, h, w in inputs)


def test_cat_inception_spade_has_the_originals_layout():
    model = create_model("cat_inception_spade_generator", ngf=8)
    keys = set(model.state_dict())
    assert {"fc.weight", "fc_norm.weight", "fc_norm.running_mean", "head_0.res_ops.2.0.conv.weight",
            "head_0.res_ops.2.0.norm.weight", "head_0.res_ops.2.1.conv.bias", "head_0.dw_ops.1.1.conv.weight",
            "head_0.dw_ops.1.1.norm.running_var", "head_0.dw_ops.1.2.conv.weight",
            "head_0.spade.param_free_norm.running_mean", "head_0.spade.res_ops.0.0.norm.weight",
            "head_0.spade.res_ops.0.1.weight", "head_0.spade.dw_ops.2.1.norm.bias", "head_0.spade.dw_ops.2.2.bias",
            "up_0.shortcut.0.weight", "up_0.shortcut.1.conv.weight", "conv_img.weight"} <= keys
    # The depthwise conv's norm has no affine parameters; the 1x1 shortcut no bias; trunk blocks no shortcut.
    assert "head_0.dw_ops.1.1.norm.weight" not in keys and "up_0.shortcut.1.conv.bias" not in keys
    assert not any(k.startswith(("head_0.shortcut", "G_middle_1.shortcut")) for k in keys)
    # Teacher widths: fc 16 * ngf; a main branch min(in, out) // 6; a norm branch 128 // 6.
    assert model.fc.out_channels == 128 and model.up_3.res_ops[0][1].conv.out_channels == 8
    assert [model.head_0.res_ops[0][0].conv.out_channels, model.up_0.res_ops[0][0].conv.out_channels,
            model.up_3.dw_ops[2][1].conv.groups] == [128 // 6, 64 // 6, 8 // 6]
    assert model.up_1.spade.res_ops[1][1].out_channels == 2 * 64 and model.up_1.spade.dw_ops[0][0].conv.out_channels \
        == 21
    assert isinstance(model.head_0.res_ops[0][0].active, torch.nn.LeakyReLU)
    assert isinstance(create_model("cat_inception_spade_generator", ngf=8, activation="relu").up_2.active,
                      torch.nn.ReLU)


def pruned_spade_widths() -> dict:
    blocks = [{"res": [0, 30, 12], "dw": [20, 0, 5], "spade": {"res": [4, 0, 9], "dw": [0, 0, 0]}},
              {"res": [0, 0, 0], "dw": [0, 0, 0], "spade": {"res": [3, 3, 3], "dw": [1, 1, 1]}}]
    blocks += [{"res": [8, 0, 0], "dw": [0, 2, 0], "spade": {"res": [0, 0, 0], "dw": [0, 5, 0]}}] * 3
    blocks += [{"res": [0, 0, 0], "dw": [0, 0, 0], "spade": {"res": [0, 0, 0], "dw": [0, 0, 0]}},
               {"res": [1, 0, 0], "dw": [0, 0, 0], "spade": {"res": [0, 2, 0], "dw": [0, 0, 0]}}]
    return {"fc": 64, "blocks": blocks}


def test_a_pruned_cat_inception_spade_builds_runs_and_reloads():
    torch.manual_seed(0)
    widths = pruned_spade_widths()
    student = create_model("cat_inception_spade_generator", widths=widths, activation="relu").eval()
    assert student.width_config() == widths and json.loads(json.dumps(widths)) == widths
    assert student.fc.out_channels == 64 and student.up_3.shortcut[1].conv.out_channels == 4
    assert len(student.head_0.res_ops) == 2 and student.head_0.res_ops[0][1].conv.kernel_size == (3, 3)
    assert len(student.G_middle_0.res_ops) == len(student.G_middle_0.dw_ops) == 0
    assert len(student.up_3.spade.res_ops) == 1 and not student.up_3.spade.dw_ops
    seg = label_map_to_input(torch.randint(0, 35, (256, 512)), "cityscapes", torch.randint(0, 3, (256, 512)))
    buffer = io.BytesIO()
    torch.save(student.state_dict(), buffer)
    buffer.seek(0)
    reloaded = create_model("cat_inception_spade_generator", widths=widths, activation="relu").eval()
    reloaded.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        output = student(seg)
        assert output.shape == (1, 3, 256, 512) and torch.equal(reloaded(seg), output)
    # up_2 has no branch: it passes its input on through the shortcut alone.
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(student.up_2(x, seg), student.up_2.shortcut(x), rtol=0, atol=0)


@pytest.mark.parametrize(("args", "message"), [
    ({"widths": {"fc": 320, "blocks": []}}, "blocks must be a list of 7 {res, dw, spade} dicts"),
    ({"widths": {**pruned_spade_widths(), "fc": 8}}, "fc must be an integer of at least 16"),
    ({"widths": {**pruned_spade_widths(), "blocks": [{"res": [1, 2, 3], "dw": [0, 0, 0]}] * 7}},
     "widths: head_0 must be a dict with exactly the keys res, dw, spade"),
    ({"widths": {**pruned_spade_widths(), "blocks": [{"res": [1, 2, 3], "dw": [0, 0, 0],
                                                      "spade": {"res": [1], "dw": [0, 0, 0]}}] * 7}},
     "head_0.spade.res must be a list of 3 non-negative integers"),
    ({"activation": "gelu"}, "activation must be one of leaky_relu, relu"),
    ({"dataset": "ade20k"}, "dataset must be one of cityscapes, coco-stuff"),
])
def test_bad_inception_spade_requests_are_one_clear_error(args, message):
    with pytest.raises(GzooError) as error:
        create_model("cat_inception_spade_generator", **args)
    assert message in str(error.value) and "\n" not in str(error.value)
