"""The one adapter between `codemix eval`'s results JSON and the report.

The report needs, per evaluated stage: the study's category scores and, for the paired bootstrap, one
score per example of every task. `codemix eval` writes (codemix/eval/harness.py, schema 1):

    {"tasks": {name: {"category": "reasoning"|"knowledge"|"code"|"extra", "primary_metric": "acc",
                      "score": 0.61, "records": [{"id": ..., "<primary_metric>": 1.0, ...}, ...]}},
     "aggregate": {"reasoning": {"score": 0.52, "tasks": [...], "missing": [...]}, "knowledge": {...},
                   "code": {...}, "nl_avg": {"score": ...}, "total_avg": {"score": ...}},
     "aggregate_bpb": {the same keys, over each task's "bpb" metric; records carry "bpb" too},
     "failed": {name: {"error": ...}}, "unavailable": {name: reason},
     "heldout": {"corpus": path, "sources": {source: {"kind": ..., "loss": ..., "bits_per_byte": ...}}}, ...}

Scores are fractions in [0, 1]; the report shows them as percentages, like the study's Table 2.
If the format changes, this module is the only place to follow it."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from codemix.errors import ConfigError

CATEGORIES = ("reasoning", "knowledge", "code")
AVERAGES = {"nl_avg": ("reasoning", "knowledge"), "total_avg": ("reasoning", "knowledge", "code")}
BPB_SUFFIX = "_bpb"  # "reasoning_bpb": the category's mean bits per byte of the gold continuation


@dataclass(frozen=True)
class TaskScores:
    category: str
    metric: str
    score: float
    examples: dict[str, float]  # example id -> its score under the task's primary metric
    bpb_examples: dict[str, float] = field(default_factory=dict)  # example id -> gold bits per byte


@dataclass(frozen=True)
class EvalScores:
    path: Path
    tasks: dict[str, TaskScores]
    # "reasoning", "knowledge", "code", "nl_avg", "total_avg" -> score, None when not computable;
    # the same names + BPB_SUFFIX -> mean bits per byte (absent in results written before it existed).
    summary: dict[str, float | None]
    missing: dict[str, list[str]] = field(default_factory=dict)  # category -> study tasks not scored
    heldout_bpb: dict[str, float] = field(default_factory=dict)  # source -> held-out bits per byte

    def tasks_of(self, category: str) -> list[str]:
        return sorted(name for name, task in self.tasks.items() if task.category == category)


def read_eval_results(path: Path) -> EvalScores:
    """Read one results JSON; a file that is not one says so, naming the file."""
    try:
        raw = json.loads(Path(path).read_text())
        tasks = {name: _task(task) for name, task in raw["tasks"].items()}
        aggregate = raw["aggregate"]
        summary = {name: _score(aggregate.get(name)) for name in (*CATEGORIES, *AVERAGES)}
        bpb = raw.get("aggregate_bpb") or {}
        summary.update({name + BPB_SUFFIX: _score(bpb.get(name)) for name in (*CATEGORIES, *AVERAGES)})
        missing = {name: list(aggregate.get(name, {}).get("missing", [])) for name in CATEGORIES}
        heldout = {source: float(entry["bits_per_byte"])
                   for source, entry in (raw.get("heldout") or {}).get("sources", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: not a codemix eval results file: {type(err).__name__}: {err}") from err
    return EvalScores(Path(path), tasks, summary, missing, heldout)


def _task(task: dict) -> TaskScores:
    metric = task["primary_metric"]
    records = task.get("records", [])
    examples = {str(record["id"]): float(record[metric]) for record in records}
    bpb = {str(record["id"]): float(record["bpb"]) for record in records if "bpb" in record}
    return TaskScores(task["category"], metric, float(task["score"]), examples, bpb)


def _score(entry: dict | None) -> float | None:
    score = None if entry is None else entry.get("score")
    return None if score is None or math.isnan(score) else float(score)
