"""The study's Table 2 over evaluated stages, and each row's deltas against its matched baseline.

Rows: one per stage, the baseline arms first, then the arms in the order found, each arm's stages in
training order; a stage that an earlier arm already showed (the same identity: a shared init or CPT)
is not repeated.

Baselines: the text-only arms, each row matched with a stage of the same model size and kind
(codemix/analysis/baselines.py): a cooldown with the baseline's cooldown of the same kind (with or
without code), every other stage with the baseline's last stage before its cooldown."""

from dataclasses import dataclass, field

import numpy as np

from codemix.analysis.baselines import baseline_arms, is_cooldown, match_baseline
from codemix.analysis.bootstrap import Delta, Pair, paired_delta
from codemix.analysis.eval_results import AVERAGES, BPB_SUFFIX, CATEGORIES, EvalScores, TaskScores, read_eval_results
from codemix.analysis.runs import StageRun

SCORES = (*CATEGORIES, *AVERAGES)  # reasoning, knowledge, code, nl_avg, total_avg
SCORE_TITLES = {"reasoning": "reasoning", "knowledge": "knowledge", "code": "code",
                "nl_avg": "NL avg", "total_avg": "total avg"}
BPB_SCORES = tuple(name + BPB_SUFFIX for name in SCORES)  # the continuous twins (bits per byte, lower is better)
SCORE_TITLES.update({name + BPB_SUFFIX: f"{title} bpb" for name, title in list(SCORE_TITLES.items())})


@dataclass
class Row:
    run: StageRun
    scores: EvalScores | None
    baseline: "Row | None" = None
    deltas: dict[str, Delta] = field(default_factory=dict)  # score name (or its _bpb twin) -> delta vs the baseline
    same_as: "Row | None" = None  # the row of another arm that is this very stage (trained once)
    baseline_note: str | None = None  # why the baseline is not of the row's own kind, when it is not

    @property
    def is_cooldown(self) -> bool:
        return is_cooldown(self.run)

    def score(self, name: str) -> float | None:
        return None if self.scores is None else self.scores.summary.get(name)


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
    last_of_arm = {run.arm: run for run in runs}  # runs come in training order within an arm
    shown: dict[str, Row] = {}
    rows = []
    for run in sorted(runs, key=lambda run: run.arm not in arms):  # the baselines first, as in the study; stable
        if run.identity in shown and last_of_arm[run.arm] is not run:
            continue
        row = Row(run, read_eval_results(run.results_path) if run.results_path.is_file() else None,
                  same_as=shown.get(run.identity))
        shown.setdefault(run.identity, row)
        rows.append(row)
    baseline_rows = [row for row in rows if row.run.arm in arms]
    for row in rows:
        row.baseline, row.baseline_note = match_baseline(row, baseline_rows, same_size=baseline_arm is None)
        if row.baseline is not None and row.baseline is not row and row.scores and row.baseline.scores:
            row.deltas = score_deltas(row.scores, row.baseline.scores, options)
    return rows


def score_deltas(arm: EvalScores, base: EvalScores, options: BootstrapOptions) -> dict[str, Delta]:
    """Each study score's delta and its bits-per-byte twin's, bootstrapped over the examples both
    models were scored on."""
    deltas = {}
    for suffix, per_example in (("", _primary), (BPB_SUFFIX, _bpb)):
        pairs = {category: _pairs(arm, base, category, per_example) for category in CATEGORIES}
        for name in SCORES:
            groups = [pairs[category] for category in AVERAGES.get(name, (name,))]
            if all(groups):
                deltas[name + suffix] = paired_delta(groups, options.resamples, options.level, options.seed)
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
