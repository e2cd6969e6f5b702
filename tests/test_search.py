"""Sub-network search under a MACs budget: brute force and GAN Compression's evolution, on real MAC counts."""

import itertools

import pytest

from gzoo.compress.search import (
    SEARCH_SPACES,
    EvolutionSettings,
    brute_force,
    config_string,
    evolution_search,
    first_generation_weights,
    sub_mobile_macs,
)
from gzoo.errors import GzooError

# A small space (16 configs) whose MACs are real: sub-mobile ResNet-9 at 256x256, counted on the meta device.
SMALL_SPACE = ((16, 8),) * 4 + ((16,),) * 4
MACS = sub_mobile_macs()


def width_score(config):
    """A stand-in criterion that prefers wide networks (lower is better), so the budget is what binds."""
    return -sum(config)


def test_brute_force_finds_the_widest_config_under_the_budget():
    budget = 1.1e9
    under = [c for c in itertools.product(*SMALL_SPACE) if MACS(c) <= budget]
    assert 1 < len(under) < 16  # the budget cuts the space: a real test of the constraint
    result = brute_force(SMALL_SPACE, MACS, width_score, budget)
    assert result.macs <= budget and result.best == min(under, key=width_score)
    assert set(result.evaluated) == set(under)  # nothing over the budget was even scored
    assert result.table()[0]["config"] == config_string(result.best)


def test_evolution_never_leaves_the_budget_and_is_reproducible_with_a_seed():
    space = SEARCH_SPACES["channels-32"]
    budget = 2.0e9
    settings = EvolutionSettings(population_size=6, iterations=2, seed=3)
    first = evolution_search(space, MACS, width_score, budget, settings)
    assert all(macs <= budget for macs, _ in first.evaluated.values())
    assert first.macs <= budget and first.score == min(score for _, score in first.evaluated.values())
    again = evolution_search(space, MACS, width_score, budget, settings)
    assert again.best == first.best and again.evaluated == first.evaluated


def test_a_budget_below_the_smallest_config_is_one_clear_error():
    with pytest.raises(GzooError, match="below the smallest config 16_16_16_16_16_16_16_16"):
        evolution_search(SEARCH_SPACES["channels-32"], MACS, width_score, 1e8)


def test_weighted_sample_draws_the_first_generation_with_the_originals_weights():
    # channel_configs.py: weights start at (n - 1) / (weighted_sample - 1) for the widest and grow by 1.
    assert first_generation_weights(5, 2) == [4, 5, 6, 7, 8]
    assert first_generation_weights(3, 3) == [1, 2, 3]
    space = SEARCH_SPACES["channels-64-cyclegan"]
    free = lambda config: 0  # noqa: E731 - every config fits, so only the draw shapes the population
    for weighted, shares in ((1.0, [1 / 5] * 5), (2.0, [w / 30 for w in (4, 5, 6, 7, 8)])):
        settings = EvolutionSettings(population_size=400, iterations=0, seed=1, weighted_sample=weighted)
        drawn = evolution_search(space, free, width_score, 1.0, settings).evaluated
        widths = [width for config in drawn for width in config]
        for width, share in zip((64, 48, 32, 24, 16), shares, strict=True):
            assert widths.count(width) / len(widths) == pytest.approx(share, abs=0.03)
