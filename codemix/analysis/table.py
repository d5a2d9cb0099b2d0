"""The study's Table 2 over evaluated stages, and each row's deltas against its matched baseline.

Rows: one per stage, the baseline arms first, then the arms in the order found, each arm's stages in
training order; a stage that an earlier arm already showed (the same identity: a shared init or CPT)
is not repeated. A stage trained once per seed is one row: its scores are the mean over the seeds,
with their spread, and its deltas a bootstrap over seeds and examples (codemix/analysis/seed_scores.py).

Baselines: the text-only arms, each row matched with a stage of the same model size and kind
(codemix/analysis/baselines.py): a cooldown with the baseline's cooldown of the same kind (with or
without code), every other stage with the baseline's last stage before its cooldown."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from codemix.analysis.baselines import baseline_arms, is_cooldown, match_baseline
from codemix.analysis.bootstrap import Delta, Pair, seeded_delta
from codemix.analysis.eval_results import AVERAGES, BPB_SUFFIX, CATEGORIES, EvalScores, TaskScores, read_eval_results
from codemix.analysis.runs import StageRun
from codemix.analysis.seed_scores import mean_over_seeds, paired_seeds, spread

SCORES = (*CATEGORIES, *AVERAGES)  # reasoning, knowledge, code, nl_avg, total_avg
SCORE_TITLES = {"reasoning": "reasoning", "knowledge": "knowledge", "code": "code",
                "nl_avg": "NL avg", "total_avg": "total avg"}
BPB_SCORES = tuple(name + BPB_SUFFIX for name in SCORES)  # the continuous twins (bits per byte, lower is better)
SCORE_TITLES.update({name + BPB_SUFFIX: f"{title} bpb" for name, title in list(SCORE_TITLES.items())})


@dataclass
class Row:
    run: StageRun  # the first seed's stage: names, tokens, lineage
    scores: EvalScores | None  # over the evaluated seeds: their mean (one seed: its own)
    baseline: "Row | None" = None
    deltas: dict[str, Delta] = field(default_factory=dict)  # score name (or its _bpb twin) -> delta vs the baseline
    same_as: "Row | None" = None  # the row of another arm that is this very stage (trained once)
    baseline_note: str | None = None  # why the baseline is not of the row's own kind, when it is not
    seed_runs: list[StageRun] = field(default_factory=list)  # every seed's stage, by seed (run first)
    seed_results: list[EvalScores | None] = field(default_factory=list)  # each seed's scores (None: not evaluated)

    @property
    def seed_scores(self) -> list[EvalScores]:
        """The evaluated seeds' scores, by seed."""
        return [scores for scores in self.seed_results if scores is not None]

    @property
    def is_cooldown(self) -> bool:
        return is_cooldown(self.run)

    def score(self, name: str) -> float | None:
        return None if self.scores is None else self.scores.summary.get(name)

    def spread(self, name: str) -> float | None:
        """The score's seed spread (sample sd over the evaluated seeds); None below two seeds."""
        return spread(self.seed_scores, name)

    def label_of(self, run: StageRun) -> str:
        """A seed's stage: the row's label, with its seed when the row has several."""
        return self.run.label if len(self.seed_runs) < 2 else f"{self.run.label} seed {run.seed}"


@dataclass(frozen=True)
class BootstrapOptions:
    resamples: int = 2000
    level: float = 0.95
    seed: int = 0


def build_rows(runs: list[StageRun], baseline_arm: str | None = None,
               options: BootstrapOptions = BootstrapOptions()) -> list[Row]:
    """Rows of the table, with deltas against the baseline where both sides were evaluated. A stage
    that arms share is shown once, under the first arm, unless it is another arm's last stage (e.g.
    the 50% code sweep point is balanced -> text's init): every arm keeps its result row."""
    arms = baseline_arms(list(dict.fromkeys(run.arm for run in runs)), baseline_arm)
    stages = _seeded_stages(runs)
    last_of_arm = {seeds[0].arm: seeds for seeds in stages}  # runs come in training order within an arm
    shown: dict[tuple[str, ...], Row] = {}
    rows = []
    for seeds in sorted(stages, key=lambda seeds: seeds[0].arm not in arms):  # the baselines first, as in the study; stable
        identities = tuple(run.identity for run in seeds)
        if identities in shown and last_of_arm[seeds[0].arm] is not seeds:
            continue
        results = [read_eval_results(run.results_path) if run.results_path.is_file() else None for run in seeds]
        scored = [scores for scores in results if scores is not None]
        row = Row(seeds[0], mean_over_seeds(scored) if scored else None, same_as=shown.get(identities),
                  seed_runs=seeds, seed_results=results)
        shown.setdefault(identities, row)
        rows.append(row)
    baseline_rows = [row for row in rows if row.run.arm in arms]
    for row in rows:
        row.baseline, row.baseline_note = match_baseline(row, baseline_rows, same_size=baseline_arm is None)
        if row.baseline is not None and row.baseline is not row and row.scores and row.baseline.scores:
            row.deltas = score_deltas(row.seed_scores, row.baseline.seed_scores, options)
    return rows


def _seeded_stages(runs: list[StageRun]) -> list[list[StageRun]]:
    """The runs of each arm's stage, one per seed (by seed), in the order the stages come."""
    grouped: dict[tuple[str, str], list[StageRun]] = {}
    for run in runs:
        grouped.setdefault((run.arm, run.stage), []).append(run)
    return [sorted(seeds, key=lambda run: run.seed) for seeds in grouped.values()]


def score_deltas(arm: Sequence[EvalScores], base: Sequence[EvalScores], options: BootstrapOptions) -> dict[str, Delta]:
    """Each study score's delta and its bits-per-byte twin's, bootstrapped over the seeds (the k-th of
    each side paired) and, inside each, the examples both models were scored on."""
    deltas = {}
    seeds = paired_seeds(arm, base)
    for suffix, per_example in (("", _primary), (BPB_SUFFIX, _bpb)):
        pairs = [{category: _pairs(a, b, category, per_example) for category in CATEGORIES} for a, b in seeds]
        for name in SCORES:
            groups = [[seed[category] for category in AVERAGES.get(name, (name,))] for seed in pairs]
            if groups and all(all(seed) for seed in groups):
                deltas[name + suffix] = seeded_delta(groups, options.resamples, options.level, options.seed)
    return deltas


def _primary(task: TaskScores) -> dict[str, float]:
    return task.examples


def _bpb(task: TaskScores) -> dict[str, float]:
    return task.bpb_examples


def _pairs(arm: EvalScores, base: EvalScores, category: str, per_example=_primary) -> list[Pair]:
    """Per task of the category that both evaluated: the two models' scores on their common examples."""
    pairs = []
    for task in sorted(set(arm.tasks_of(category)) & set(base.tasks_of(category))):
        a, b = per_example(arm.tasks[task]), per_example(base.tasks[task])
        common = sorted(set(a) & set(b))
        if common:
            pairs.append((np.array([a[i] for i in common]), np.array([b[i] for i in common])))
    return pairs
