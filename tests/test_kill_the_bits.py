"""The ``kill-the-bits`` converter: the published Bit-Goes-Down ResNets decode, classify photos and have the
published sizes; a synthetic checkpoint round-trips exactly and damaged ones fail naming the layer."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn

from gzoo.errors import GzooError
from gzoo.models import create_model
from gzoo.zoo.converters import Converted, get_converter
from gzoo.zoo.converters.kill_the_bits import MB

# Test data only (CC BY-NC 4.0): read in place from the shared fixtures, never copied into the repository.
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kill-the-bits"

# The source README's table: architecture, model size in MB, size ratio to the dense fp32 model.
PUBLISHED = {
    "resnet18_small_blocks": ("resnet18", 1.54, 29),
    "resnet18_large_blocks": ("resnet18", 1.03, 43),
    "resnet50_large_blocks": ("resnet50", 3.19, 31),
}
# Our packed sizes in bytes; kill-the-bits issue #39 counts the same 1,615,904 and 3,338,784 independently.
PACKED_BYTES = {"resnet18_small_blocks": 1_615_904, "resnet18_large_blocks": 1_079_328,
                "resnet50_large_blocks": 3_338_784}
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 504}  # espresso, coffee mug

ALL = list(PUBLISHED)
RESNET50_SIZE_GAP = pytest.mark.xfail(strict=True, reason="decodes to 3.184 MB (3,338,784 bytes), the README prints "
                                                          "3.19; issue #39's independent count also gets 3.18")


def convert(path: Path) -> Converted:
    return get_converter("kill-the-bits")(path, None, {})


@pytest.fixture(scope="module")
def published(request) -> tuple[str, Converted, nn.Module]:
    """A published checkpoint (named by the indirect parameter), converted once and loaded strictly."""
    if not FIXTURES.is_dir():
        pytest.skip(f"the published Bit-Goes-Down checkpoints are not at {FIXTURES}")
    name = request.param
    converted = convert(FIXTURES / f"{name}.pth")
    model = create_model(converted.arch, **converted.arch_args).eval()
    model.load_state_dict(converted.state_dict, strict=True)
    return name, converted, model


@pytest.mark.parametrize("published", ALL, indirect=True)
def test_published_checkpoints_convert_to_their_architecture(published):
    name, converted, model = published
    assert converted.arch == PUBLISHED[name][0] and converted.arch_args == {}
    assert converted.extra["packed"]["packed_bytes"] == PACKED_BYTES[name]
    # Every conv and the fc are quantised, except the first conv.
    quantised = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))} - {"conv1"}
    assert set(converted.extra["packed"]["layers"]) == quantised


@pytest.mark.parametrize("published", [*ALL[:2], pytest.param(ALL[2], marks=RESNET50_SIZE_GAP)], indirect=True)
def test_packed_size_is_the_published_one(published):
    name, converted, _ = published
    printed = PUBLISHED[name][1]
    assert printed - 0.005 <= converted.extra["packed"]["packed_bytes"] / MB < printed + 0.005


@pytest.mark.parametrize("published", ALL, indirect=True)
def test_size_ratio_to_the_dense_model_is_the_published_one(published):
    name, converted, _ = published
    packed = converted.extra["packed"]
    assert round(packed["dense_bytes"] / packed["packed_bytes"]) == PUBLISHED[name][2]


def imagenet_batch(*names: str) -> torch.Tensor:
    """scikit-image photographs, preprocessed the standard torchvision way for ImageNet classifiers."""
    from torchvision import transforms

    preprocess = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                     transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return torch.stack([preprocess(Image.fromarray(getattr(data, name)())) for name in names])


@pytest.mark.parametrize("published", ALL, indirect=True)
def test_decoded_resnets_classify_real_photos_top1(published):
    _, _, model = published
    with torch.no_grad():
        cat, coffee = model(imagenet_batch("chelsea", "coffee")).argmax(dim=1).tolist()
    assert cat in CAT_CLASSES
    assert coffee in COFFEE_CLASSES


def pack(model: nn.Module, d: int = 4) -> dict:
    """``model`` in the published layout, each block its own centroid, so that decoding must give it back."""
    packed: dict = {"fc_bias": {"bias": model.fc.bias.detach().clone()}}
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            packed[name] = {"weight": module.weight.detach().half(), "bias": module.bias.detach().half()}
        elif name == "conv1":
            packed[name] = {"weight": module.weight.detach().half()}
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            c_out = module.weight.shape[0]
            rows = module.weight.detach().reshape(c_out, -1, d)  # [channel, block, :]
            n_blocks = rows.shape[1]
            index = torch.arange(n_blocks * c_out).view(n_blocks, c_out).t()  # block * C_out + channel
            centroids = torch.empty(n_blocks * c_out, d, dtype=torch.float16)
            centroids[index.reshape(-1)] = rows.reshape(-1, d).half()
            packed[name] = {"centroids": centroids, "assignments": torch.arange(len(centroids)),
                            "n_blocks": n_blocks, "is_conv": module.weight.dim() == 4,
                            "k": module.weight.shape[-1] if module.weight.dim() == 4 else 1}
    return packed


@pytest.fixture(scope="module")
def synthetic() -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = create_model("resnet18")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    return model, pack(model)


def test_synthetic_checkpoint_round_trips_exactly(synthetic, tmp_path):
    model, packed = synthetic
    torch.save(packed, tmp_path / "synthetic.pth")
    converted = convert(tmp_path / "synthetic.pth")
    assert converted.arch == "resnet18"
    for key, value in model.state_dict().items():
        if key.endswith("running_mean"):
            expected = torch.zeros_like(value)  # no statistics stored: the inference code runs 0 and 1
        elif key.endswith("running_var"):
            expected = torch.ones_like(value)
        elif key.endswith("num_batches_tracked") or key == "fc.bias":
            expected = value
        else:
            expected = value.half().float()
        torch.testing.assert_close(converted.state_dict[key], expected, atol=0, rtol=0, msg=key)


@pytest.mark.parametrize(("layer", "damage"), [
    ("layer3.1.conv2", lambda entry: None),  # missing
    ("layer2.0.bn1", lambda entry: {**entry, "weight": entry["weight"][:-1]}),
    ("layer4.0.downsample.0", lambda entry: {**entry, "assignments": entry["assignments"][:-1]}),
    ("fc", lambda entry: {**entry, "centroids": entry["centroids"][:, :3]}),
    ("layer1.0.conv1", lambda entry: {**entry, "assignments": entry["assignments"] + len(entry["centroids"])}),
])
def test_damaged_checkpoint_fails_naming_the_layer(synthetic, tmp_path, layer, damage):
    _, packed = synthetic
    damaged = {key: entry for key, entry in {**packed, layer: damage(packed[layer])}.items() if entry is not None}
    torch.save(damaged, tmp_path / "damaged.pth")
    with pytest.raises(GzooError, match=f"layer '{layer}'"):
        convert(tmp_path / "damaged.pth")
