"""The study's averages over task scores (fractions in [0, 1]):
reasoning = mean over its reasoning tasks, knowledge = TriviaQA + NQ-Open, code = HumanEval + MBPP,
NL avg = mean(reasoning, knowledge), total avg = mean(reasoning, knowledge, code).

An average says which tasks it covers and which of the study's it lacks (unavailable, failed or
not run), so a shrunken average is never mistaken for the study's."""

import math

from codemix.eval.tasks.registry import TASKS, UNAVAILABLE

GROUPS = ("reasoning", "knowledge", "code")


def _study_tasks(category: str) -> list[str]:
    names = [name for name, spec in TASKS.items() if spec.category == category]
    return names + [name for name, (cat, _) in UNAVAILABLE.items() if cat == category]


def aggregate(scores: dict[str, tuple[str, float]]) -> dict:
    """`scores`: task name -> (category, primary score) of every task that ran to completion."""
    result: dict[str, dict] = {}
    for group in GROUPS:
        covered = sorted(name for name, (category, value) in scores.items()
                         if category == group and not math.isnan(value))
        missing = [name for name in _study_tasks(group) if name not in covered]
        values = [scores[name][1] for name in covered]
        result[group] = {"score": sum(values) / len(values) if values else None,
                         "tasks": covered, "missing": missing}
    parts = {group: result[group]["score"] for group in GROUPS}
    result["nl_avg"] = _mean_of(parts, ("reasoning", "knowledge"))
    result["total_avg"] = _mean_of(parts, GROUPS)
    return result


def _mean_of(parts: dict[str, float | None], groups: tuple[str, ...]) -> dict:
    values = [parts[g] for g in groups]
    score = None if any(v is None for v in values) else sum(values) / len(values)
    return {"score": score, "of": list(groups)}
