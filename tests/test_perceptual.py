"""The perceptual feature networks are the real ones at the right layers; Gram and TV match direct computations;
VGG16 or VGG19 without its weights offline fails at once, in one line, naming the file, where it goes and the
alternative."""

import time

import numpy as np
import pytest
import torch
from offline import refuse_network
from photos import photo

from gzoo.compress import perceptual
from gzoo.errors import GzooError


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub cache with nothing in it (torch.hub reads TORCH_HOME on every call)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def offline_inception(inception_weights, monkeypatch):
    monkeypatch.setenv("GZOO_INCEPTION_WEIGHTS", str(inception_weights))


def fake_vgg16_state() -> dict[str, torch.Tensor]:
    """Seeded weights in torchvision's key layout (the real file is 528 MB; the layout is what is tested)."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).state_dict()


def seeded_vgg19() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None)


def test_vgg16_taps_are_torchvisions_relu_layers(empty_hub):
    import torchvision

    state = fake_vgg16_state()
    empty_hub.mkdir(parents=True)
    torch.save(state, empty_hub / perceptual.VGG16_FILE)
    net = perceptual.perceptual_network("vgg16", download=False)
    reference = torchvision.models.vgg16(weights=None)
    reference.load_state_dict(state)
    image = photo(64)
    normalised = ((image + 1) / 2 - torch.tensor(perceptual.IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(perceptual.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = net(image)
        theirs = [reference.features[:end + 1](normalised) for end in perceptual.VGG16_TAPS.values()]
    assert [tuple(f.shape[1:]) for f in ours] == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    unit = perceptual.Vgg16Features(state, "unit")  # OMGD's: (x + 1) / 2 without mean and std
    with torch.no_grad():
        torch.testing.assert_close(unit(image)[0], reference.features[:4]((image + 1) / 2))


def test_vgg19_taps_are_spades_slices_of_torchvisions(empty_hub):
    reference = seeded_vgg19()
    empty_hub.mkdir(parents=True)
    features = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    torch.save(features, empty_hub / perceptual.VGG19_FILE)  # the classifier (400 MB) is never read
    net = perceptual.perceptual_network("vgg19", download=False)
    assert net.taps == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    image = photo(64)
    with torch.no_grad():
        ours = net(image)
        theirs, x = [], image  # SPADE's VGG19: slices [0:2], [2:7], [7:12], [12:21], [21:30], the image as it is
        for start, end in ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30)):
            x = reference.features[start:end](x)
            theirs.append(x)
    assert [tuple(f.shape[1:]) for f in ours] == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8),
                                                  (512, 4, 4)]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    assert float(ours[0].max()) > 0  # the image's features, not an empty map


@pytest.mark.parametrize(("name", "file", "url"), [("vgg16", perceptual.VGG16_FILE, perceptual.VGG16_URL),
                                                   ("vgg19", perceptual.VGG19_FILE, perceptual.VGG19_URL)])
def test_vgg_without_weights_offline_fails_in_one_line(empty_hub, monkeypatch, name, file, url):
    refuse_network(monkeypatch)
    started = time.perf_counter()
    with pytest.raises(GzooError) as failure:
        perceptual.check_available(name)
    assert time.perf_counter() - started < 5
    line = str(failure.value)
    assert "\n" not in line
    assert line.startswith(f"{name.upper()} weights")
    assert file in line and str(empty_hub) in line and url in line
    assert "'inception'" in line
    monkeypatch.setenv("GZOO_OFFLINE", "1")  # said offline: no connection is even tried
    with pytest.raises(GzooError, match=file):
        perceptual.check_available(name, hint="set training.perceptual: inception")
    with pytest.raises(GzooError, match=file):
        perceptual.perceptual_network(name)


def test_unknown_network_is_refused():
    with pytest.raises(GzooError, match="vgg16, vgg19, inception"):
        perceptual.check_available("vgg11")


def test_inception_taps_are_the_fid_trunk(offline_inception, inception_weights, monkeypatch):
    from gzoo.metrics.inception import load_extractor

    refuse_network(monkeypatch)
    net = perceptual.perceptual_network("inception")
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training  # its batch norms never leave eval mode
    image = photo(299)
    with torch.no_grad():
        taps = net(image)
        # torch-fidelity's own 64- and 192-d features: global averages after the max pools that follow two taps.
        uint8 = ((image + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        expected = load_extractor(inception_weights, ("64", "192"))(uint8)
        ours = net(uint8.float() / 128 - 1)  # the trunk's (x - 128) / 128
    assert [f.shape[1] for f in taps] == [32, 64, 192, 288]
    assert all(float(f.min()) >= 0 for f in taps)  # ReLU outputs
    for tap, pooled in ((ours[1], expected[0]), (ours[2], expected[1])):
        torch.testing.assert_close(torch.nn.functional.max_pool2d(tap, 3, 2).mean((2, 3)), pooled.float(),
                                   atol=1e-4, rtol=1e-4)


def test_inception_gradients_reach_the_images(offline_inception):
    net = perceptual.perceptual_network("inception")
    image = photo(96).requires_grad_(True)
    sum(f.mean() for f in net(image)).backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    with pytest.raises(GzooError, match="at least 27x27"):
        net(photo(24))


def test_gram_matches_einsum_on_a_real_photo(offline_inception):
    net = perceptual.perceptual_network("inception")
    with torch.no_grad():
        features = net(torch.cat([photo(96), photo(96, "chelsea")]))
    for f in features:
        n, c, h, w = f.shape
        direct = torch.einsum("nchw,ndhw->ncd", f, f)
        torch.testing.assert_close(perceptual.gram_matrix(f), direct / (c * h * w))
        torch.testing.assert_close(perceptual.gram_matrix(f, "hw"), direct / (h * w))
    other = [f.flip(0) for f in features]
    by_hand = sum((perceptual.gram_matrix(a) - perceptual.gram_matrix(b)).abs().mean()
                  for a, b in zip(features, other, strict=True))
    torch.testing.assert_close(perceptual.gram_loss(features, other), by_hand)
    assert float(by_hand) > 0
    with pytest.raises(ValueError):
        perceptual.gram_matrix(features[0], "c")


def test_total_variation_by_hand_on_a_real_photo():
    image = photo(32, "coffee")
    array = image[0].numpy().astype(np.float64)
    by_hand = 0.0
    for c in range(3):
        for y in range(32):
            for x in range(32):
                if x + 1 < 32:
                    by_hand += abs(array[c, y, x + 1] - array[c, y, x])
                if y + 1 < 32:
                    by_hand += abs(array[c, y + 1, x] - array[c, y, x])
    assert float(perceptual.total_variation(image)) == pytest.approx(by_hand, rel=1e-5)
    mean = float(perceptual.total_variation(image, "mean"))
    assert mean == pytest.approx(by_hand / (3 * 32 * 31), rel=1e-5)
