"""The bootstrap over seeds and examples together, on synthetic scores whose variance is known."""

import numpy as np
import pytest

from codemix.analysis.bootstrap import paired_delta, seed_spread, seeded_delta

SEEDS, EXAMPLES, SEED_SD, EXAMPLE_SD, TRUE_DELTA = 40, 200, 0.05, 0.2, 0.03


def synthetic(rng: np.random.Generator) -> list:
    """Per seed: one reasoning task; the arm's run differs from the baseline's by TRUE_DELTA plus a
    run-to-run effect (sd SEED_SD) plus per-example noise (sd EXAMPLE_SD)."""
    seeds = []
    for _ in range(SEEDS):
        base = rng.normal(0.5, 0.1, EXAMPLES)
        arm = base + TRUE_DELTA + rng.normal(0, SEED_SD) + rng.normal(0, EXAMPLE_SD, EXAMPLES)
        seeds.append([[(arm, base)]])
    return seeds


def test_the_interval_carries_seed_and_example_variance():
    seeds = synthetic(np.random.default_rng(1))
    delta = seeded_delta(seeds, resamples=4000, seed=3)
    # sd of the mean delta over seeds: sqrt(seed var / S + example var / (S n))
    expected_sd = np.sqrt(SEED_SD ** 2 / SEEDS + EXAMPLE_SD ** 2 / (SEEDS * EXAMPLES))
    width = delta.absolute.high - delta.absolute.low
    assert width / (2 * 1.96) == pytest.approx(expected_sd, rel=0.25)
    assert delta.absolute.low < TRUE_DELTA < delta.absolute.high
    # Pooling every seed's examples into one bootstrap over examples misses the run-to-run effect:
    # its interval is several times too narrow.
    pooled = paired_delta([[(np.concatenate([g[0][0][0] for g in seeds]), np.concatenate([g[0][0][1] for g in seeds]))]],
                          resamples=4000, seed=3)
    assert pooled.absolute.high - pooled.absolute.low < width / 2


def test_one_seed_is_the_paired_bootstrap_and_identical_runs_differ_by_nothing():
    rng = np.random.default_rng(0)
    scores = rng.random(50)
    same = seeded_delta([[[(scores, scores)]]] * 3, resamples=500)
    assert (same.absolute.estimate, same.absolute.low, same.absolute.high) == (0.0, 0.0, 0.0)
    assert seed_spread([0.1, 0.3]) == pytest.approx(np.std([0.1, 0.3], ddof=1)) and seed_spread([0.2]) == 0.0
