"""One arm's stage trained once per seed (`codemix reproduce --seeds N`, or `seed:` lists in a recipe):
its scores over the seeds, and how two such stages are paired for a delta.

- The table shows the mean over the evaluated seeds and the seed spread (the sample standard deviation
  of the score over seeds; none for a single seed).
- A delta pairs the k-th seed of one side with the k-th seed of the other (seeds in increasing order;
  with more seeds on one side, the extra ones are left out), and its interval is a bootstrap over
  seeds and examples together (codemix/analysis/bootstrap.py seeded_delta). With one seed a side this
  is the paired bootstrap over examples, bit for bit."""

from collections.abc import Sequence

import numpy as np

from codemix.analysis.bootstrap import seed_spread
from codemix.analysis.eval_results import CATEGORIES, EvalScores, TaskScores


def mean_over_seeds(seeds: Sequence[EvalScores]) -> EvalScores:
    """The seeds' scores averaged: per task over the tasks every seed scored, per example over the
    examples every seed scored; summary and held-out bpb as the mean of the seeds' (None when a seed
    lacks the score). One seed: its own scores, unchanged."""
    if len(seeds) == 1:
        return seeds[0]
    first = seeds[0]
    tasks = {name: _mean_task([s.tasks[name] for s in seeds])
             for name in first.tasks if all(name in s.tasks for s in seeds)}
    summary = {name: _mean([s.summary.get(name) for s in seeds]) for name in first.summary}
    missing = {category: sorted({task for s in seeds for task in s.missing.get(category, [])}) for category in CATEGORIES}
    heldout = {source: float(np.mean([s.heldout_bpb[source] for s in seeds]))
               for source in first.heldout_bpb if all(source in s.heldout_bpb for s in seeds)}
    return EvalScores(first.path, tasks, summary, missing, heldout)


def spread(seeds: Sequence[EvalScores], name: str) -> float | None:
    """The seed spread of one summary score; None with fewer than two seeds that have it."""
    values = [value for s in seeds if (value := s.summary.get(name)) is not None]
    return seed_spread(values) if len(values) > 1 else None


def paired_seeds(arm: Sequence[EvalScores], base: Sequence[EvalScores]) -> list[tuple[EvalScores, EvalScores]]:
    """The k-th seed of each side together (both in seed order)."""
    return list(zip(arm, base))


def _mean_task(runs: list[TaskScores]) -> TaskScores:
    return TaskScores(runs[0].category, runs[0].metric, float(np.mean([r.score for r in runs])),
                      _mean_examples([r.examples for r in runs]), _mean_examples([r.bpb_examples for r in runs]))


def _mean_examples(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0] if all(key in r for r in runs)}


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))
