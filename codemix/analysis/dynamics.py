"""Training dynamics: the study's scores at every scored checkpoint of an arm, against tokens.

`codemix eval STAGE --checkpoints all` scores a stage's snapshots (eval/snapshots/tokens-N.json) and
its final/ (eval/results.json). A checkpoint stands at tokens along the whole arm (its stage's
ancestors' tokens first, as in the loss curves), so init, CPT and cooldown join into one curve per
arm, with every evaluated stage's final/ on it too. An arm trained once per seed has one curve per
seed. Without any scored snapshot there are no curves: the finals alone are Table 2."""

import json
from dataclasses import dataclass
from pathlib import Path

from codemix.analysis.eval_results import EvalScores, read_eval_results
from codemix.analysis.formatting import blank, fmt_tokens, pct, score_text, to_csv
from codemix.analysis.runs import StageRun
from codemix.analysis.table import BPB_SCORES, SCORE_TITLES, SCORES
from codemix.runs.layout import SNAPSHOT_RESULTS, snapshot_tokens

FINAL = "final"
# The figure's panels and the section's columns: each category's accuracy, then its bpb twin.
DYNAMICS_SCORES = ("reasoning", "knowledge", "code", "reasoning_bpb", "knowledge_bpb", "code_bpb")


@dataclass(frozen=True)
class Checkpoint:
    run: StageRun
    name: str  # "tokens-N" (a snapshot) or "final"
    stage_tokens: int  # tokens of its stage trained when it was taken
    scores: EvalScores

    @property
    def tokens(self) -> int:
        """Where it stands along the arm."""
        return self.run.tokens_before + self.stage_tokens

    @property
    def is_snapshot(self) -> bool:
        return self.name != FINAL

    def score(self, name: str) -> float | None:
        """A study score (or its _bpb twin); None when not computable."""
        return self.scores.summary.get(name)


def stage_checkpoints(run: StageRun) -> list[Checkpoint]:
    """The stage's scored snapshots in token order, then its final/ when evaluated. A snapshot results
    file at the stage's last step (the same weights as final/) is left to final/."""
    folder = run.path / SNAPSHOT_RESULTS
    scored = sorted((tokens, path) for path in (folder.glob("*.json") if folder.is_dir() else [])
                    if (tokens := snapshot_tokens(path.name)) is not None and tokens < run.lineage.tokens)
    points = [Checkpoint(run, path.stem, tokens, read_eval_results(path)) for tokens, path in scored]
    if run.results_path.is_file():
        points.append(Checkpoint(run, FINAL, run.lineage.tokens, read_eval_results(run.results_path)))
    return points


def training_dynamics(stages: list[StageRun]) -> dict[str, list[Checkpoint]]:
    """curve label -> its checkpoints along the arm in token order: the arm's name, with the seed when
    the arm was trained with several. Empty when no snapshot was scored; arms with no scored
    checkpoint are left out."""
    seeds: dict[str, set[int]] = {}
    for run in stages:
        seeds.setdefault(run.arm, set()).add(run.seed)
    curves: dict[str, list[Checkpoint]] = {}
    for run in stages:
        label = run.arm if len(seeds[run.arm]) == 1 else f"{run.arm} seed {run.seed}"
        curves.setdefault(label, []).extend(stage_checkpoints(run))
    if not any(point.is_snapshot for points in curves.values() for point in points):
        return {}
    return {label: sorted(points, key=lambda p: p.tokens) for label, points in curves.items() if points}


def dynamics_lines(curves: dict[str, list[Checkpoint]], figure: Path | None) -> list[str]:
    """The report's section: what was scored, and each curve's first and last checkpoint."""
    command = "`codemix eval STAGE --checkpoints all`"
    if not curves:
        return ["", "## Training dynamics", "",
                f"No snapshot was scored. {command} scores every snapshot a stage kept "
                "(`snapshot_interval_tokens`); this section then follows each arm's scores through training."]
    snapshots = sum(point.is_snapshot for points in curves.values() for point in points)
    drawn = f"{figure.as_posix()}, " if figure else ""
    lines = ["", "## Training dynamics", "",
             f"Scores at every scored checkpoint along each arm ({snapshots} snapshots scored by {command}, and "
             f"each stage's final weights), against tokens along the arm ({drawn}dynamics.csv). Accuracy in %, "
             "bpb in bits per byte of the gold continuation (lower is better); first -> last checkpoint.", "",
             "| arm | checkpoints | tokens | " + " | ".join(SCORE_TITLES[s] for s in DYNAMICS_SCORES) + " |",
             "|---|---|---|" + "---|" * len(DYNAMICS_SCORES)]
    for label, points in curves.items():
        first, last = points[0], points[-1]
        span = f"{fmt_tokens(first.tokens, False)} -> {fmt_tokens(last.tokens, False)}"
        lines.append(f"| {label} | {len(points)} | {span} | "
                     + " | ".join(f"{score_text(s, first.score(s))} -> {score_text(s, last.score(s))}"
                                  for s in DYNAMICS_SCORES) + " |")
    return lines


def dynamics_csv(curves: dict[str, list[Checkpoint]]) -> str:
    """One row per curve and checkpoint: where it stands, every study score and its bpb twin."""
    return to_csv([{"curve": label, "arm": point.run.arm, "stage": point.run.stage, "checkpoint": point.name,
                    "stage_tokens": point.stage_tokens, "tokens": point.tokens,
                    **{f"{s}_pct": pct(point.score(s)) if point.score(s) is not None else "" for s in SCORES},
                    **{s: blank(point.score(s)) for s in BPB_SCORES},
                    "heldout_bpb": json.dumps(point.scores.heldout_bpb, sort_keys=True),
                    "results": str(point.scores.path)}
                   for label, points in curves.items() for point in points])
