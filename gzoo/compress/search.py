"""Choose a once-for-all supernet's sub-network under a MACs budget, as GAN Compression does.

A config gives the channel width at each of the 8 positions of a sub-mobile generator (see REFERENCE.md). Two
searches, both returning the best-scoring config whose MACs fit the budget (lower score is better: FID; negate
mIoU or PSNR):

- ``brute_force``: every config of the space under the budget;
- ``evolution_search``: GAN Compression's regularised evolution (population 100, 500 iterations, mutation
  probability 0.2, half of each new generation from mutation, a quarter of it kept as parents), seeded; its
  first generation may favour narrow widths (``weighted_sample``).

Scores and MACs are memoised per config, since scoring a config (running the supernet over a held-out split)
is the expensive part.
"""

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from gzoo.errors import GzooError

Config = tuple[int, ...]

# GAN Compression's search spaces (REFERENCE.md), one tuple of channel choices per position.
SEARCH_SPACES: dict[str, tuple[tuple[int, ...], ...]] = {
    "channels-32": ((32, 24, 16),) * 8,
    "channels-48": ((48, 32),) * 2 + ((48, 40, 32),) * 4 + ((48, 32, 24, 16),) * 2,
    "channels-64-cyclegan": ((64, 48, 32, 24, 16),) * 8,
    "channels-64-pix2pix": ((64, 56, 48, 40, 32, 24, 16),) * 8,
}


@dataclass(frozen=True)
class EvolutionSettings:
    """GAN Compression's evolution_search.py defaults."""

    population_size: int = 100
    iterations: int = 500
    mutate_prob: float = 0.2
    mutation_ratio: float = 0.5  # share of each new generation made by mutation (the rest by crossover)
    parent_ratio: float = 0.25  # share of the population kept as parents
    seed: int = 0
    # --weighted_sample: above 1, the first generation favours narrow widths. Of n choices the i-th widest
    # (from 0) is drawn with weight (n - 1) / (weighted_sample - 1) + i, so 2 gives 64..16 weights 4, 5, 6, 7, 8.
    weighted_sample: float = 1.0
    max_trials: int = 1000  # attempts to draw a config under the budget before giving up


@dataclass
class SearchResult:
    best: Config
    score: float
    macs: int
    evaluated: dict[Config, tuple[int, float]]  # every scored config: (MACs, score)

    def table(self) -> list[dict]:
        """Rows for the run directory's results table, best first."""
        rows = [{"config": config_string(c), "macs": m, "score": s} for c, (m, s) in self.evaluated.items()]
        return sorted(rows, key=lambda row: row["score"])


def config_string(config: Config) -> str:
    """The config as GAN Compression writes it: ``16_16_32_16_32_32_16_16``."""
    return "_".join(map(str, config))


class _Memo:
    """MACs and scores of configs, each computed once; refuses a space whose smallest config is over budget."""

    def __init__(self, space: tuple[tuple[int, ...], ...], macs: Callable[[Config], int],
                 score: Callable[[Config], float], budget: float) -> None:
        self.macs_of, self.score_of, self.budget = macs, score, budget
        self.macs: dict[Config, int] = {}
        self.evaluated: dict[Config, tuple[int, float]] = {}
        smallest = tuple(min(choices) for choices in space)
        if self.cost(smallest) > budget:
            raise GzooError(f"MACs budget {budget:.4g} is below the smallest config {config_string(smallest)} "
                            f"({self.cost(smallest):.4g} MACs); raise the budget or pick a smaller search space")

    def cost(self, config: Config) -> int:
        if config not in self.macs:
            self.macs[config] = self.macs_of(config)
        return self.macs[config]

    def fits(self, config: Config) -> bool:
        return self.cost(config) <= self.budget

    def score(self, config: Config) -> float:
        if config not in self.evaluated:
            self.evaluated[config] = (self.cost(config), self.score_of(config))
        return self.evaluated[config][1]

    def result(self) -> SearchResult:
        best = min(self.evaluated, key=lambda c: self.evaluated[c][1])
        return SearchResult(best, self.evaluated[best][1], self.evaluated[best][0], dict(self.evaluated))


def brute_force(space: tuple[tuple[int, ...], ...], macs: Callable[[Config], int], score: Callable[[Config], float],
                budget: float) -> SearchResult:
    """Score every config of ``space`` whose MACs fit ``budget``; the best one wins."""
    memo = _Memo(space, macs, score, budget)
    for config in itertools.product(*space):
        if memo.fits(config):
            memo.score(config)
    return memo.result()


def evolution_search(space: tuple[tuple[int, ...], ...], macs: Callable[[Config], int],
                     score: Callable[[Config], float], budget: float,
                     settings: EvolutionSettings = EvolutionSettings()) -> SearchResult:
    """Regularised evolution under the budget: keep the best parents, refill by mutation and crossover.

    Each generation keeps ``parent_ratio`` of the population, adds ``mutation_ratio`` of it by mutating random
    parents and fills the rest with crossovers of two random parents, so the population stays at its size.
    """
    memo = _Memo(space, macs, score, budget)
    rng = random.Random(settings.seed)

    def under_budget(draw: Callable[[], Config]) -> Config:
        for _ in range(settings.max_trials):
            config = draw()
            if memo.fits(config):
                return config
        raise GzooError(f"no config under the MACs budget {budget:.4g} in {settings.max_trials} draws; raise the "
                        "budget or pick a smaller search space")

    widest_first = [sorted(choices, reverse=True) for choices in space]
    weights = [first_generation_weights(len(widths), settings.weighted_sample) for widths in widest_first] \
        if settings.weighted_sample > 1 else None

    def random_config() -> Config:
        if weights is None:
            return tuple(rng.choice(choices) for choices in space)
        return tuple(rng.choices(widths, weights=w)[0] for widths, w in zip(widest_first, weights, strict=True))

    def mutate(parent: Config) -> Config:
        return tuple(rng.choice(choices) if rng.random() < settings.mutate_prob else width
                     for width, choices in zip(parent, space, strict=True))

    def crossover(first: Config, second: Config) -> Config:
        return tuple(rng.choice(pair) for pair in zip(first, second, strict=True))

    mutations = round(settings.mutation_ratio * settings.population_size)
    parents_size = max(1, round(settings.parent_ratio * settings.population_size))
    population = [under_budget(random_config) for _ in range(settings.population_size)]
    for _ in range(settings.iterations):
        parents = sorted(population, key=memo.score)[:parents_size]
        children = [under_budget(lambda pool=parents: mutate(rng.choice(pool))) for _ in range(mutations)]
        children += [under_budget(lambda pool=parents: crossover(rng.choice(pool), rng.choice(pool)))
                     for _ in range(settings.population_size - mutations - len(parents))]
        population = parents + children
    for config in population:
        memo.score(config)
    return memo.result()


def first_generation_weights(choices: int, weighted_sample: float) -> list[float]:
    """Weights of a position's widths, widest first, for evolution's first generation (``weighted_sample`` > 1)."""
    start = (choices - 1) / (weighted_sample - 1)
    return [start + i for i in range(choices)]


def sub_mobile_macs(input_size: tuple[int, int, int] = (3, 256, 256), n_blocks: int = 9) -> Callable[[Config], int]:
    """Paper-convention MACs of a sub-mobile ResNet config, counted on the meta device (nothing computed)."""
    import torch

    from gzoo.metrics import count_macs
    from gzoo.models import create_model

    def macs(config: Config) -> int:
        with torch.device("meta"):
            model = create_model("sub_mobile_resnet_generator", config=config_string(config), n_blocks=n_blocks)
            return count_macs(model.eval(), torch.zeros(1, *input_size)).macs_paper

    return macs


def smallest_config_macs(space: str, input_size: int, n_blocks: int = 9) -> tuple[int, str]:
    """Paper MACs of the narrowest config of a named search space at a square input, and that config."""
    smallest = tuple(min(choices) for choices in SEARCH_SPACES[space])
    return sub_mobile_macs((3, input_size, input_size), n_blocks)(smallest), config_string(smallest)
