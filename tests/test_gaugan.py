"""GauGAN's training blocks: SPADE's multi-scale discriminator (parameters counted by hand, the original's
state-dict keys, every stage's output shape at 512x256); its GAN, feature-matching and VGG losses against direct
computations; the step's terms against a direct computation, gradients kept to their side, TTUR's optimisers, and a
few steps that teach the discriminator."""

import pytest
import torch
from photos import photo

from gzoo.compress import perceptual
from gzoo.compress.engine import TrainingSettings
from gzoo.compress.gaugan import GauGan, GauGanSettings, ttur_groups
from gzoo.compress.losses import feature_matching, multiscale_gan_loss
from gzoo.models.patchgan import MultiscaleDiscriminator

LABELS = 36  # cityscapes: 35 label ids + the instance edge map
SIZE = (256, 512)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_multiscale_discriminator_parameters_by_hand():
    # One scale: a 4x4 conv 39->64 with bias; 64->128->256->512 without bias (spectral norm + instance norm after
    # them: weight_orig only, u and v are buffers); 512->1 with bias. Two identical scales.
    one_scale = (39 * 64 * 16 + 64) + 64 * 128 * 16 + 128 * 256 * 16 + 256 * 512 * 16 + (512 * 16 + 1)
    assert count_params(MultiscaleDiscriminator(LABELS + 3)) == 2 * one_scale == 5_601_410
    # A fifth layer stays at 512 (the cap is 512 channels, not 8 * ndf), three scales.
    deeper = one_scale - 512 * 16 - 1 + 512 * 512 * 16 + 512 * 16 + 1
    assert count_params(MultiscaleDiscriminator(LABELS + 3, n_layers=5, num_d=3)) == 3 * deeper


def test_multiscale_discriminator_keys_are_the_originals():
    state = MultiscaleDiscriminator(LABELS + 3, ndf=8).state_dict()
    assert list(state)[:6] == ["discriminator_0.model0.0.weight", "discriminator_0.model0.0.bias",
                               "discriminator_0.model1.0.0.weight_orig", "discriminator_0.model1.0.0.weight_u",
                               "discriminator_0.model1.0.0.weight_v", "discriminator_0.model2.0.0.weight_orig"]
    assert state["discriminator_1.model3.0.0.weight_v"].shape == (32 * 4 * 4,)  # spectral norm's input vector
    assert state["discriminator_1.model3.0.0.weight_u"].shape == (64,)
    assert "discriminator_0.model1.0.0.bias" not in state
    assert list(state)[-2:] == ["discriminator_1.model4.0.weight", "discriminator_1.model4.0.bias"]
    spectral_only = MultiscaleDiscriminator(LABELS + 3, ndf=8, norm="spectral").state_dict()
    assert "discriminator_0.model1.0.bias" in spectral_only  # no norm after it: the conv keeps its bias
    with pytest.raises(ValueError, match="norm_D"):
        MultiscaleDiscriminator(LABELS + 3, norm="spectralgroup")


def test_multiscale_discriminator_outputs_every_stage_at_both_scales():
    torch.manual_seed(0)
    discriminator = MultiscaleDiscriminator(LABELS + 3, ndf=8)
    with torch.no_grad():
        predictions = discriminator(torch.randn(2, LABELS + 3, *SIZE))
    # 4x4 convs with padding 2: stride 2 maps h to h // 2 + 1, stride 1 to h + 1. The second scale starts from
    # the 3x3 / 2 average pool with padding 1 of 256x512: 128x256.
    assert [[tuple(t.shape) for t in scale] for scale in predictions] == [
        [(2, 8, 129, 257), (2, 16, 65, 129), (2, 32, 33, 65), (2, 64, 34, 66), (2, 1, 35, 67)],
        [(2, 8, 65, 129), (2, 16, 33, 65), (2, 32, 17, 33), (2, 64, 18, 34), (2, 1, 19, 35)]]
    assert all(float(t.min()) < 0 for scale in predictions for t in scale[:-1])  # LeakyReLU 0.2, not ReLU


def random_predictions(seed: int, scales: int = 3, stages: int = 4) -> list[list[torch.Tensor]]:
    """A multi-scale discriminator's output shape for shape: per scale, stages of shrinking maps."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(2, 4, 12 // (s + 1) + k, 10 // (s + 1) + k, generator=generator) * 2
             for k in range(stages)] for s in range(scales)]


def test_multiscale_gan_loss_averages_each_scales_prediction():
    predictions = random_predictions(0)
    lasts = [scale[-1] for scale in predictions]
    zero = torch.zeros(())
    # SPADE's hinge, written as the original writes it: -mean(min(p - 1, 0)) for real, -mean(min(-p - 1, 0)).
    hinge_real = sum(-torch.minimum(p - 1, zero).mean() for p in lasts) / 3
    hinge_fake = sum(-torch.minimum(-p - 1, zero).mean() for p in lasts) / 3
    torch.testing.assert_close(multiscale_gan_loss("hinge", predictions, True), hinge_real)
    torch.testing.assert_close(multiscale_gan_loss("hinge", predictions, False), hinge_fake)
    torch.testing.assert_close(multiscale_gan_loss("hinge", predictions, True, for_discriminator=False),
                               -sum(p.mean() for p in lasts) / 3)
    torch.testing.assert_close(multiscale_gan_loss("lsgan", predictions, False),
                               sum((p ** 2).mean() for p in lasts) / 3)
    assert float(hinge_real) != pytest.approx(float(hinge_fake))  # the two sides are told apart


def test_feature_matching_is_the_intermediate_l1_per_scale():
    fake, real = random_predictions(1), random_predictions(2)
    for t in [t for scale in fake + real for t in scale]:
        t.requires_grad_(True)
    by_hand = torch.zeros(())
    for fake_scale, real_scale in zip(fake, real, strict=True):
        for f, r in zip(fake_scale[:3], real_scale[:3], strict=True):  # the 4th stage is the prediction
            by_hand = by_hand + (f - r).abs().sum() / f.numel()
    loss = feature_matching(fake, real)
    torch.testing.assert_close(loss, by_hand / 3)
    loss.backward()
    assert all(t.grad is None for scale in real for t in scale)  # the real side is a target
    assert all(scale[-1].grad is None for scale in fake)  # predictions are not matched
    assert all(float(t.grad.abs().sum()) > 0 for scale in fake for t in scale[:-1])


def seeded_vgg19_features() -> torch.nn.Sequential:
    """torchvision's VGG19 ``features`` (config E) with seeded weights: no classifier, no download."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])


def test_vgg_loss_is_spades_weighted_l1_over_vgg19_taps():
    features = seeded_vgg19_features()
    net = perceptual.Vgg19Features({f"features.{k}": v for k, v in features.state_dict().items()})
    real = photo(48)
    fake = photo(48, "chelsea").requires_grad_(True)
    by_hand, x, y = torch.zeros(()), fake, real
    for weight, (start, end) in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30)),
                                    strict=True):
        x, y = features[start:end](x), features[start:end](y)
        by_hand = by_hand + weight * (x - y).abs().mean()
    loss = perceptual.vgg_loss(net, fake, real)
    torch.testing.assert_close(loss, by_hand)
    assert loss.item() > 0
    loss.backward()
    assert float(fake.grad.abs().sum()) > 0
    assert float(perceptual.vgg_loss(net, real, real)) == 0


def test_vgg_loss_on_the_offline_trunk_weighs_its_four_taps_as_vgg19s_deepest(inception_weights):
    from gzoo.metrics.inception import load_extractor

    net = perceptual.InceptionFeatures(load_extractor(inception_weights))
    real, fake = photo(64), photo(64, "coffee")
    with torch.no_grad():
        taps_fake, taps_real = net(fake), net(real)
        by_hand = sum(w * (f - r).abs().mean() for w, f, r in zip((1 / 16, 1 / 8, 1 / 4, 1), taps_fake, taps_real,
                                                                    strict=True))
        torch.testing.assert_close(perceptual.vgg_loss(net, fake, real), by_hand)


# --- the step -----------------------------------------------------------------------------------------------------

def tiny_perceptual() -> perceptual.PerceptualNetwork:
    """A two-tap feature network (VGG19 is tested above; at 512x256 it would take far longer than the rest)."""
    torch.manual_seed(1)
    layers = torch.nn.Sequential()
    layers.add_module("conv_a", torch.nn.Conv2d(3, 4, 3, padding=1))
    layers.add_module("relu_a", torch.nn.ReLU())
    layers.add_module("pool", torch.nn.AvgPool2d(2))
    layers.add_module("conv_b", torch.nn.Conv2d(4, 6, 3, padding=1))
    layers.add_module("relu_b", torch.nn.ReLU())
    return perceptual.PerceptualNetwork("tiny", layers, ("relu_a", "relu_b"))


def tiny_generator() -> torch.nn.Module:
    torch.manual_seed(2)
    return torch.nn.Sequential(torch.nn.Conv2d(LABELS, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Tanh())


def label_batch(n: int, size: tuple[int, int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot label maps (35 ids + an edge channel) and photos in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, LABELS - 1, (n, *size), generator=generator)
    seg = torch.nn.functional.one_hot(ids, LABELS).permute(0, 3, 1, 2).float()
    seg[:, -1] = (torch.rand(n, *size, generator=generator) > 0.9).float()
    return seg, torch.rand(n, 3, *size, generator=generator) * 2 - 1


def gaugan(ndf: int = 4, **weights: float) -> GauGan:
    torch.manual_seed(4)
    return GauGan(MultiscaleDiscriminator(LABELS + 3, ndf=ndf), tiny_perceptual(), **weights)


def test_terms_equal_a_direct_computation_at_512x256():
    model = gaugan(lambda_gan=2.0, lambda_feat=3.0, lambda_vgg=5.0)
    model.discriminator.eval()  # the spectral norms' power iteration would otherwise move between the passes
    seg, real = label_batch(2, SIZE)
    fake = tiny_generator()(seg)
    calls = []
    model.discriminator.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    with torch.no_grad():
        g_terms, d_terms = model.generator_terms(seg, fake, real), model.discriminator_terms(seg, fake, real)
        assert calls == [4, 4]  # generated and real images in one batch
        on_fake = model.discriminator(torch.cat([seg, fake], 1))
        on_real = model.discriminator(torch.cat([seg, real], 1))
        relu_a, relu_b = model.perceptual.layers[:2], model.perceptual.layers  # its two taps, run by hand
    gan = -(on_fake[0][-1].mean() + on_fake[1][-1].mean()) / 2
    feat = sum((f - r).abs().mean() for fs, rs in zip(on_fake, on_real, strict=True)
               for f, r in zip(fs[:4], rs[:4], strict=True)) / 2
    vgg = (relu_a(fake) - relu_a(real)).abs().mean() / 4 + (relu_b(fake) - relu_b(real)).abs().mean()  # 1/4, 1
    torch.testing.assert_close(g_terms["G_gan"], 2.0 * gan)
    torch.testing.assert_close(g_terms["G_feat"], 3.0 * feat)
    torch.testing.assert_close(g_terms["G_vgg"], 5.0 * vgg)
    torch.testing.assert_close(d_terms["D_fake"], sum((1 + p[-1]).clamp(min=0).mean() for p in on_fake) / 2)
    torch.testing.assert_close(d_terms["D_real"], sum((1 - p[-1]).clamp(min=0).mean() for p in on_real) / 2)
    assert float(g_terms["G_feat"]) > 0 and float(g_terms["G_vgg"]) > 0
    assert set(GauGan(model.discriminator, None, lambda_vgg=0.0).generator_terms(seg, fake, real)) == \
        {"G_gan", "G_feat", "G_vgg"}
    with pytest.raises(ValueError, match="lambda_vgg"):
        GauGan(model.discriminator, None)


def test_each_objective_moves_only_its_own_network():
    model, generator = gaugan(), tiny_generator()
    seg, real = label_batch(1, (64, 128))
    sum(model.generator_terms(seg, generator(seg), real).values()).backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.requires_grad for p in model.discriminator.parameters())  # unfrozen after the terms
    assert all(float(p.grad.abs().sum()) > 0 for p in generator.parameters())
    generator.zero_grad(set_to_none=True)
    sum(model.discriminator_terms(seg, generator(seg), real).values()).backward()
    assert all(p.grad is None for p in generator.parameters())
    assert all(float(p.grad.abs().sum()) > 0 for p in model.discriminator.parameters())


def test_the_discriminator_judges_the_updated_generators_image():
    model, generator = gaugan(), tiny_generator()
    model.discriminator.eval()  # a fixed spectral norm, so the two computations below can be compared
    seg, real = label_batch(1, (32, 64))
    step = model.updates(generator, seg, real)
    objectives, terms = next(step)
    assert set(objectives) == {"G"} and set(terms) == {"G_gan", "G_feat", "G_vgg"}
    torch.testing.assert_close(objectives["G"], terms["G_gan"] + terms["G_feat"] + terms["G_vgg"])
    with torch.no_grad():  # what the engine does between the two updates: here, a visible change of G
        generator[-2].bias += 0.5
    objectives, terms = next(step)
    assert set(objectives) == {"D"}
    with torch.no_grad():
        expected = model.discriminator_terms(seg, generator(seg), real)
    torch.testing.assert_close(terms, expected)
    torch.testing.assert_close(objectives["D"], expected["D_fake"] + expected["D_real"])  # no 1/2


def test_ttur_groups_are_create_optimizers():
    settings = GauGanSettings()
    assert (settings.lambda_feat, settings.lambda_vgg, settings.num_d, settings.norm_d, settings.ttur,
            settings.perceptual) == (10.0, 10.0, 2, "spectralinstance", True, "vgg19")
    recipe = TrainingSettings(lr=2e-4, beta1=0.5, beta2=0.999)
    parameters = [torch.nn.Parameter(torch.zeros(1))]
    for ttur, expected in ((True, {"G": (1e-4, (0.0, 0.9)), "D": (4e-4, (0.0, 0.9))}),
                           (False, {"G": (2e-4, (0.5, 0.999)), "D": (2e-4, (0.5, 0.999))})):
        groups = ttur_groups(["generator"], ["discriminator"], 2e-4, ttur)
        assert groups["G"].members == ("generator",) and groups["D"].members == ("discriminator",)
        for name, (lr, betas) in expected.items():
            adam = groups[name].build(parameters, groups[name].lr, recipe).param_groups[0]
            assert adam["lr"] == pytest.approx(lr) and adam["betas"] == pytest.approx(betas)
    assert ttur_groups(["g"], ["d"], 1e-3, False, (0.9, 0.99))["D"].betas == (0.9, 0.99)


def test_a_few_steps_teach_the_discriminator():
    model, generator = gaugan(ndf=8), tiny_generator()
    seg, real = label_batch(2, (32, 64))
    groups = ttur_groups(["generator"], ["discriminator"], 1e-3)
    modules = {"generator": generator, "discriminator": model.discriminator}
    optimizers = {name: spec.build([p for m in spec.members for p in modules[m].parameters()], spec.lr,
                                   TrainingSettings()) for name, spec in groups.items()}
    losses = []
    for _ in range(20):
        for objectives, _ in model.updates(generator, seg, real):
            (name, objective), = objectives.items()
            optimizers[name].zero_grad()
            objective.backward()
            optimizers[name].step()
        losses.append(objective.item())  # the last objective of a step is the discriminator's
    assert sum(losses[-5:]) < 0.25 * sum(losses[:5]), losses  # hinge: 2 at the start (1 + 1)
