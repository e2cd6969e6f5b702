"""The MAC counter's two conventions on layers whose counts can be worked out by hand; latency timing."""


import pytest
import torch
from torch import nn

from gzoo.metrics import count_macs, count_params, measure_latency
from gzoo.metrics.latency import median_stable
from gzoo.metrics.macs import MacCount, UncountedOperatorError
from gzoo.models import create_model


def test_conv_counts_output_elements_times_kernel_volume_in_both_conventions():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    count = count_macs(conv, torch.zeros(1, 4, 8, 8))
    assert count.macs == count.macs_paper == 8 * 8 * 6 * 4 * 9


def test_grouped_conv_counts_channels_per_group():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(conv, torch.zeros(1, 8, 5, 5)).macs == 5 * 5 * 8 * 9


def test_transposed_conv_is_counted_over_input_truly_and_over_output_in_the_paper_convention():
    up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    count = count_macs(up, torch.zeros(1, 4, 8, 8))
    assert count.macs == (4 * 8 * 8) * 2 * 9  # every input element meets out_channels x k x k weights
    assert count.macs_paper == (2 * 16 * 16) * 4 * 9  # torchprofile: output elements x in_channels x k x k
    assert count.macs_paper == 4 * count.macs


def test_the_paper_convention_counts_instance_and_layer_norms_but_not_batch_norms_or_activations():
    # torchprofile 0.0.1: aten::instance_norm and aten::layer_norm cost one per output element, affine or not;
    # aten::batch_norm costs 0; group norm, leaky ReLU and bilinear upsampling it has no handler for (0).
    x = torch.rand(2, 4, 6, 5)
    counted = (nn.InstanceNorm2d(4), nn.InstanceNorm2d(4, affine=True), nn.LayerNorm(5),
               nn.LayerNorm(5, elementwise_affine=False))
    for layer in counted:
        assert count_macs(layer, x) == MacCount(macs=0, macs_paper=2 * 4 * 6 * 5), layer
    free = (nn.BatchNorm2d(4).eval(), nn.BatchNorm2d(4).train(), nn.BatchNorm2d(4, affine=False).eval(),
            nn.BatchNorm2d(4, track_running_stats=False), nn.GroupNorm(2, 4), nn.LeakyReLU(0.2),
            nn.LeakyReLU(0.2, inplace=True), nn.Upsample(scale_factor=2, mode="bilinear"))
    for layer in free:
        assert count_macs(layer, x) == MacCount(macs=0, macs_paper=0), layer


def test_a_norm_called_below_torch_nn_functional_is_an_error_not_a_guess():
    class Direct(nn.Module):
        def forward(self, x):
            return torch.native_batch_norm(x, None, None, None, None, True, 0.1, 1e-5)[0]

    with pytest.raises(UncountedOperatorError, match="aten::native_batch_norm"):
        count_macs(Direct(), torch.rand(2, 3, 4, 4))


def test_linear_and_batch():
    fc = nn.Linear(10, 7)
    count = count_macs(fc, torch.zeros(3, 10))
    assert count.macs == count.macs_paper == 3 * 10 * 7


def test_an_op_without_a_rule_is_an_error_not_a_silent_zero():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    with pytest.raises(UncountedOperatorError, match="aten::cumsum"):
        count_macs(Cumulative(), torch.zeros(1, 4))


@pytest.mark.parametrize("arch, shape", [
    ("resnet_generator", (3, 256, 256)),  # transposed convs
    ("mobile_resnet_generator", (3, 256, 256)),  # depthwise-separable convs
    ("resnet18", (3, 224, 224)),  # a linear layer
])
def test_true_macs_agree_with_fvcores_jit_flop_count(arch, shape):
    """fvcore's traced count (its "flops" are MACs) is an independent implementation of the true convention."""
    import warnings

    from fvcore.nn import FlopCountAnalysis

    model = create_model(arch).eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, *shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        by_operator = analysis.by_operator()
    assert count_macs(model, torch.zeros(1, *shape)).macs == by_operator["conv"] + by_operator.get("linear", 0)


def test_a_model_on_the_meta_device_counts_the_same_without_computing():
    arguments = {"dataset": "coco-stuff", "ngf": 8}
    real = count_macs(create_model("spade_generator", **arguments).eval(), torch.zeros(1, 184, 256, 256))
    with torch.device("meta"):
        model = create_model("spade_generator", **arguments).eval()
        assert count_macs(model, torch.zeros(1, 184, 256, 256)) == real


def test_params_count_parameters_not_buffers():
    assert count_params(nn.BatchNorm2d(5)) == 10


def test_latency_runs_within_bounds_and_restores_threads():
    threads_before = torch.get_num_threads()
    latency = measure_latency(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 32, 32), warmup=1, runs=7, threads=1)
    assert latency.runs == 7 and latency.threads == 1 and latency.batch == 1
    assert 0 < latency.median_ms < 1000 and latency.iqr_ms >= 0
    assert torch.get_num_threads() == threads_before


def test_latency_stops_early_on_a_time_budget_but_keeps_the_minimum():
    latency = measure_latency(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 32, 32), warmup=0, runs=10_000,
                              min_runs=4, max_seconds=0.0)
    assert latency.runs == 4


@pytest.mark.parametrize("script, runs, stable, settled", [
    ([10.0, 10.2, 9.9, 10.1, 10.0], 3, True, True),  # the third run leaves the median where it was: done
    ([10.0, 30.0] * 6, 6, True, False),  # a stable median over runs spread 100%: shown, never cached
    ([10.0 * 1.2**i for i in range(12)], 12, False, False),  # slowing down to the end: the median never settles
])
def test_timing_until_stable_stops_once_the_median_settles_and_says_when_it_does_not(script, runs, stable, settled,
                                                                                     monkeypatch):
    from gzoo.metrics import latency as module

    timings = iter(script)
    monkeypatch.setattr(module, "_timed_ms", lambda run: next(timings))
    measured = measure_latency(nn.Identity(), torch.zeros(1), warmup=0, runs=12, max_seconds=60,
                               until_stable=True)
    assert (measured.runs, measured.stable, measured.settled) == (runs, stable, settled)
    assert measured.spread == pytest.approx(measured.iqr_ms / measured.median_ms)
    assert measured.as_dict()["settled"] is settled


def test_median_stable_compares_with_the_runs_before_the_newest_third():
    assert not median_stable([10.0, 10.0])  # too few runs to tell
    assert median_stable([10.0, 10.0, 10.4])  # median 10 either way
    assert not median_stable([10.0, 12.0, 12.0])  # median 12 against 11 before: 9% > 5%
    assert median_stable([10.0, 12.0, 12.0], within=0.1)
