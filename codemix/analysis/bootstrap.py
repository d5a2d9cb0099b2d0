"""Paired bootstrap intervals over examples.

A study score is a nested mean: the mean over groups (NL avg = reasoning and knowledge) of the mean
over a group's tasks of the mean over a task's examples. Two models scored on the same examples are
compared by resampling each task's examples with replacement, the SAME draws for both models (paired,
so the difficulty of the drawn examples cancels), recomputing both scores, and reading the delta's
percentile interval off the resampled deltas."""

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# One task: (the arm's per-example scores, the baseline's) on the same examples in the same order.
Pair = tuple[np.ndarray, np.ndarray]
# Resampled indices per chunk are kept below this many, so a 10k-example task stays in memory.
CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Delta:
    arm: float
    base: float
    absolute: Interval  # arm - base, in score units
    relative: Interval  # (arm / base - 1) x 100; None when the baseline scores 0


def paired_delta(groups: Sequence[Sequence[Pair]], resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> Delta:
    """The arm's score minus the baseline's, with paired bootstrap intervals; `groups` as in the
    module docstring (one group of tasks for a category score)."""
    rng = np.random.default_rng(seed)
    arm_r, base_r, arm, base = _resampled_groups(rng, groups, resamples)
    return _delta(arm, base, arm_r, base_r, level)


def _resampled_groups(rng: np.random.Generator, groups: Sequence[Sequence[Pair]], resamples: int):
    """Each group's paired resampled means, averaged over groups, and the point estimates."""
    arm_groups, base_groups = [], []
    for group in groups:
        draws = [_resampled_means(rng, arm, base, resamples) for arm, base in group]
        arm_groups.append(np.mean([a for a, _ in draws], axis=0))
        base_groups.append(np.mean([b for _, b in draws], axis=0))
    arm = _nested_mean([[a for a, _ in group] for group in groups])
    base = _nested_mean([[b for _, b in group] for group in groups])
    return np.mean(arm_groups, axis=0), np.mean(base_groups, axis=0), arm, base


def _delta(arm: float, base: float, arm_r: np.ndarray, base_r: np.ndarray, level: float) -> Delta:
    absolute = Interval(arm - base, *_percentiles(arm_r - base_r, level))
    if base == 0:
        relative = Interval(None, None, None)
    else:
        # A resample whose baseline scores 0 has no finite relative change: it counts as unbounded.
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(base_r > 0, arm_r / base_r - 1.0, np.inf) * 100.0
        relative = Interval((arm / base - 1.0) * 100.0, *_percentiles(ratios, level))
    return Delta(arm, base, absolute, relative)


def seeded_delta(seeds: Sequence[Sequence[Sequence[Pair]]], resamples: int = 2000, level: float = 0.95,
                 seed: int = 0) -> Delta:
    """As `paired_delta`, over runs trained once per seed: `seeds[s]` holds seed s's groups (the arm's
    seed-s run against the baseline's seed-s run, same examples). Each resample draws seeds with
    replacement and, inside each drawn seed, that seed's examples (paired): the interval carries the
    run-to-run variance as well as the examples'. The estimate is the mean over seeds."""
    if not seeds:
        raise ValueError("seeded_delta needs at least one seed")
    rng = np.random.default_rng(seed)
    per_seed = [_resampled_groups(rng, groups, resamples) for groups in seeds]
    arm_by_seed = np.stack([r[0] for r in per_seed])  # [seeds, resamples]
    base_by_seed = np.stack([r[1] for r in per_seed])
    arm_points, base_points = [r[2] for r in per_seed], [r[3] for r in per_seed]
    n = len(seeds)
    picked = rng.integers(0, n, size=(resamples, n))
    # The k-th pick of a resample reads column r + k: a seed drawn twice gets two independent example draws.
    columns = (np.arange(resamples)[:, None] + np.arange(n)[None, :]) % resamples
    arm_r, base_r = arm_by_seed[picked, columns].mean(axis=1), base_by_seed[picked, columns].mean(axis=1)
    return _delta(float(np.mean(arm_points)), float(np.mean(base_points)), arm_r, base_r, level)


def seed_spread(values: Sequence[float]) -> float:
    """The sample standard deviation of one score over seeds (0 for a single seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_interval(values: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """The mean of `values` with a bootstrap percentile interval (e.g. a win rate over prompts)."""
    values = np.asarray(values, dtype=np.float64)
    means, _ = _resampled_means(np.random.default_rng(seed), values, values, resamples)
    return Interval(float(values.mean()), *_percentiles(means, level))


def _resampled_means(rng: np.random.Generator, arm: np.ndarray, base: np.ndarray,
                     resamples: int) -> tuple[np.ndarray, np.ndarray]:
    arm, base = np.asarray(arm, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if arm.shape != base.shape or arm.ndim != 1 or len(arm) == 0:
        raise ValueError(f"paired scores need two equal, non-empty 1-d arrays, got {arm.shape} and {base.shape}")
    n = len(arm)
    chunk = max(1, CHUNK_ELEMENTS // n)
    arm_means, base_means = [], []
    for start in range(0, resamples, chunk):
        index = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        arm_means.append(arm[index].mean(axis=1))
        base_means.append(base[index].mean(axis=1))
    return np.concatenate(arm_means), np.concatenate(base_means)


def _nested_mean(groups: Sequence[Sequence[np.ndarray]]) -> float:
    return float(np.mean([np.mean([float(np.mean(task)) for task in group]) for group in groups]))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` interval; inverted_cdf picks resampled values, so an unbounded one stays inf."""
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def fmt_interval(interval: Interval, digits: int = 1, unit: str = "") -> str:
    """'+8.2% [+3.1, +13.0]' style; '-' when there is no estimate."""
    if interval.estimate is None:
        return "-"

    def signed(value: float) -> str:
        return ("+inf" if value > 0 else "-inf") if math.isinf(value) else f"{value:+.{digits}f}"

    return f"{signed(interval.estimate)}{unit} [{signed(interval.low)}, {signed(interval.high)}]"
