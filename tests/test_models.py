"""Architectures: published parameter counts and paper-convention MACs (REFERENCE.md), shapes, key names."""

import pytest
import torch
from photos import photo

from gzoo.errors import GzooError
from gzoo.metrics import count_macs, count_params
from gzoo.models import create_model, list_architectures

# (arch, arch_args, input (H, W), params, MACs in the paper convention) as REFERENCE.md prints them. None
# means the source gives none. Params must come within 0.5% and MACs within 2%, or within the rounding of
# the printed figure (0.081M is any count from 80,500 to 81,500).
PUBLISHED = [
    ("resnet_generator", {}, (256, 256), "11.378M", "56.80G"),
    ("sub_mobile_resnet_generator", {"config": "16_16_32_16_32_32_16_16"}, (256, 256), "0.357M", "2.55G"),
    ("sub_mobile_resnet_generator", {"config": "16_16_24_16_32_64_16_24"}, (256, 256), "0.355M", "2.64G"),
    ("sub_mobile_resnet_generator", {"config": "32_32_48_32_48_48_16_16"}, (256, 256), "0.822M", "4.99G"),
    ("sub_mobile_resnet_generator", {"config": "24_24_40_56_24_56_16_40"}, (256, 256), "0.703M", "4.83G"),
    ("sub_mobile_resnet_generator", {"config": "32_32_48_32_32_48_24_24"}, (256, 256), "0.781M", "5.59G"),
    ("sub_mobile_resnet_generator", {"config": "32_32_48_32_48_32_16_16"}, (256, 256), "0.746M", "4.68G"),
    # Fast GAN Compression cityscapes and map2sat: the published rows (0.867M / 5.61G, 0.708M / 4.53G)
    # do not follow from their config strings; REFERENCE.md's independent count of the original
    # architecture gives these, and so do we.
    ("sub_mobile_resnet_generator", {"config": "16_24_48_56_40_48_24_16"}, (256, 256), "0.886M", "5.42G"),
    ("sub_mobile_resnet_generator", {"config": "16_16_40_40_40_64_24_16"}, (256, 256), "0.720M", "4.54G"),
    ("unet_generator", {"ngf": 64}, (256, 256), "54.41M", "18.14G"),
    ("unet_generator", {"ngf": 16}, (256, 256), "3.404M", "1.219G"),
    ("unet_generator", {"ngf": 12}, (256, 256), "1.916M", "0.707G"),
    ("unet_generator", {"ngf": 8}, (256, 256), "0.852M", "0.333G"),
    ("mobile_resnet_generator", {"ngf": 16}, (256, 256), "0.137M", "1.408G"),
    ("mobile_resnet_generator", {"ngf": 12}, (256, 256), "0.081M", "0.858G"),
    ("mobile_resnet_generator", {"ngf": 8}, (256, 256), "0.039M", "0.440G"),
    ("mobile_resnet_generator", {"ngf": 24}, (256, 256), "0.296M", "2.904G"),
    ("mobile_resnet_generator", {"ngf": 64}, (256, 256), "1.987M", "18.31G"),
    ("fritz_style_net", {"alpha": 1.0}, (256, 256), "1_677_638", None),
    ("fritz_style_net", {"alpha": 0.5}, (256, 256), "424_102", None),
    ("fritz_style_net", {"alpha": 0.25}, (256, 256), "108_374", None),
    ("fritz_style_net", {"alpha": 0.3, "n_blocks": 3, "small": True}, (256, 256), "11_868", None),
    # torchvision's documented figures for its classifiers (11.69M / 1.81 GFLOPS, 25.56M / 4.09).
    ("resnet18", {}, (224, 224), "11_689_512", "1.81G"),
    ("resnet50", {}, (224, 224), "25_557_032", "4.09G"),
]


@pytest.mark.parametrize(("arch", "args", "size", "params", "macs"), PUBLISHED,
                         ids=[f"{a}-{'-'.join(map(str, k.values())) or 'default'}" for a, k, *_ in PUBLISHED])
def test_published_params_and_macs(arch, args, size, params, macs):
    model = create_model(arch, **args).eval()
    assert count_params(model) == published(params, rel=0.005)
    if macs is not None:
        assert count_macs(model, torch.zeros(1, 3, *size)).macs_paper == published(macs, rel=0.02)


def published(figure: str, rel: float):
    """A printed figure like "0.357M" as an approx: the relative tolerance or its rounding, the larger."""
    scale = {"M": 1e6, "G": 1e9}.get(figure[-1], 1)
    digits = figure.rstrip("MG").replace("_", "")
    value = float(digits) * scale
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    rounding = 0.5 * 10 ** -decimals * scale if scale != 1 else 0
    return pytest.approx(value, rel=rel, abs=rounding)


@pytest.mark.parametrize("arch", ["omgd_deep_unet_generator", "omgd_deep_mobile_resnet_generator"])
def test_omgd_deep_teachers_match_the_wide_ones_in_macs(arch):
    # REFERENCE.md: both OMGD teachers are about 18G MACs at ngf 16 (the wide ones are 18.1-18.3G).
    macs = count_macs(create_model(arch).eval(), torch.zeros(1, 3, 256, 256)).macs_paper
    assert 17e9 < macs < 19.5e9


def test_vintagify_cyclegan_is_a_resnet_generator_with_affine_instance_norm():
    # REFERENCE.md: the real vintagify generator has 11,388,675 parameters.
    assert count_params(create_model("resnet_generator", norm="instance_affine")) == 11_388_675


# SPADE generators take label maps, not images; tests/test_models_spade_cat.py covers them. The DRN segmenter
# maps images to class scores; tests/test_miou.py covers it.
IMAGE_TO_IMAGE = [a for a in list_architectures() if "spade" not in a and not a.startswith("drn")]


@pytest.mark.parametrize("arch", IMAGE_TO_IMAGE)
def test_every_architecture_maps_an_image_to_the_expected_shape(arch):
    model = create_model(arch).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256) * 2 - 1)
    expected = (1, 1000) if arch.startswith("resnet") and "generator" not in arch else (1, 3, 256, 256)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()


# Whether each original clamps its input to [-1, 1] before the stem, read in its forward():
# GAN Compression's and OMGD's resnet_generator.py, sub_mobile_ and super_mobile_resnet_generator.py do;
# their mobile_resnet_generator.py does not (the clamp is commented out), nor OMGD's deep teachers
# (mobile_resnet_deepest_generator.py, unet_deepest_generator.py), the pix2pix U-Net or CAT's inception
# generator.
CLAMPS_INPUT = {
    "resnet_generator": True, "sub_mobile_resnet_generator": True, "super_mobile_resnet_generator": True,
    "mobile_resnet_generator": False, "omgd_deep_mobile_resnet_generator": False, "unet_generator": False,
    "omgd_deep_unet_generator": False, "cat_inception_generator": False,
}


@pytest.mark.parametrize("arch", CLAMPS_INPUT)
def test_inputs_outside_the_image_range_are_clamped_only_where_the_original_clamps(arch):
    torch.manual_seed(0)
    args = {"config": "8_8_16_8_16_16_8_8"} if arch.startswith("sub_") else {"ngf": 8}
    model = create_model(arch, **args).eval()
    x = photo(256 if "unet" in arch else 64) * 3  # a real photo, scaled to [-3, 3]
    with torch.no_grad():
        out, out_of_clamped = model(x), model(x.clamp(-1, 1))
    if CLAMPS_INPUT[arch]:
        assert torch.equal(out, out_of_clamped)
    else:
        assert (out - out_of_clamped).abs().max() > 1e-2


def test_key_names_follow_gan_compression():
    # Parameter names as GAN Compression saves them, so its checkpoints load key for key.
    keys = set(create_model("mobile_resnet_generator", ngf=16).state_dict())
    assert {"model.1.weight", "model.4.weight", "model.7.weight", "model.10.conv_block.1.conv.0.weight",
            "model.10.conv_block.1.conv.2.weight", "model.10.conv_block.6.conv.2.bias", "model.19.weight",
            "model.26.weight"} <= keys
    keys = set(create_model("unet_generator", ngf=8).state_dict())
    assert {"model.model.0.weight", "model.model.1.model.1.weight", "model.model.1.model.2.running_mean",
            "model.model.3.weight"} <= keys


def test_sub_mobile_widths_follow_the_config():
    model = create_model("sub_mobile_resnet_generator", config="8_16_24_32_40_48_56_64")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert convs[0].out_channels == 8 and convs[1].out_channels == 32 and convs[2].out_channels == 96
    inner = [m.conv[2].out_channels for m in model.modules() if type(m).__name__ == "SeparableConv2d"][::2]
    assert inner == [128] * 3 + [160] * 3 + [192] * 3
    ups = [m.out_channels for m in convs if isinstance(m, torch.nn.ConvTranspose2d)]
    assert ups == [112, 64]


def test_supernet_subnet_gives_the_supernet_outputs():
    torch.manual_seed(0)
    supernet = create_model("super_mobile_resnet_generator", ngf=32).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for config in ("32_32_32_32_32_32_32_32", "16_24_32_16_24_32_16_24", "8_8_8_8_8_8_8_8"):
        supernet.set_config(config)
        subnet = supernet.extract_subnet(config).eval()
        with torch.no_grad():
            torch.testing.assert_close(subnet(x), supernet(x), atol=1e-6, rtol=0)
    # The full config is the mobile generator at the supernet's width, weight for weight.
    supernet.set_config(None)
    assert count_params(supernet) == count_params(create_model("mobile_resnet_generator", ngf=32))


def test_supernet_refuses_a_config_wider_than_itself():
    supernet = create_model("super_mobile_resnet_generator", ngf=16)
    with pytest.raises(ValueError, match="wider"):
        supernet.set_config("16_16_32_16_16_16_16_16")


@pytest.mark.parametrize(("arch", "args", "message"), [
    ("resnet_generator", {"ngfs": 64}, "unknown argument 'ngfs' for architecture resnet_generator"),
    ("resnet_generator", {"norm": "group"}, "norm must be one of"),
    ("sub_mobile_resnet_generator", {"config": "16_16"}, "config must be 8 positive integers"),
    ("resnet_generatr", {}, "unknown architecture 'resnet_generatr' (did you mean resnet_generator"),
])
def test_bad_architecture_requests_are_one_clear_error(arch, args, message):
    with pytest.raises(GzooError) as error:
        create_model(arch, **args)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_classifiers_have_torchvisions_layout_and_outputs(arch):
    import torchvision

    theirs = getattr(torchvision.models, arch)(weights=None).eval()
    ours = create_model(arch).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    image = photo(224)
    torch.testing.assert_close(ours(image), theirs(image), rtol=0, atol=1e-5)
