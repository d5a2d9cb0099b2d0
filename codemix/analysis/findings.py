"""What a report can conclude: which of the study's stated directions (its findings) the measured
deltas show, which they contradict and which they cannot tell, with the numbers behind each; and how
many deltas' intervals exclude zero in the accuracy columns against the bits-per-byte ones.

A direction is shown when the accuracy delta's or the bpb delta's interval excludes zero on the
study's side (for bpb that side is the opposite sign: a better model gives its gold answers fewer
bits), contradicted when one excludes zero on the other side, and cannot be told when both intervals
cross zero."""

from collections.abc import Callable
from dataclasses import dataclass

from codemix.analysis.bootstrap import Delta
from codemix.analysis.comparisons import (BALANCED_TO_TEXT, COOLDOWN_WITH_CODE, QUALITY_ARM, Comparison,
                                          StudyComparisons)
from codemix.analysis.eval_results import BPB_SUFFIX
from codemix.analysis.formatting import delta_text, excludes_zero
from codemix.analysis.table import BPB_SCORES, SCORES, Row

SHOWN, CONTRARY, MIXED, UNCLEAR, ABSENT = "shown", "contradicted", "mixed", "cannot tell", "not measured"
Pick = Callable[[StudyComparisons], Comparison | None]


def _headline(study: StudyComparisons) -> Comparison | None:
    return study.headline


def _sweep_point(nominal: int) -> Pick:
    return lambda study: next((p.vs_zero for p in study.sweep if p.nominal == nominal), None)


def _quality(name: str) -> Pick:
    def pick(study: StudyComparisons) -> Comparison | None:
        return next((c for c in study.quality if QUALITY_ARM.search(c.arm.run.arm).group(1) == name), None)
    return pick


def _balanced_cooldown(study: StudyComparisons) -> Comparison | None:
    return next((c for c in study.cooldown if c.kind == COOLDOWN_WITH_CODE and BALANCED_TO_TEXT.search(c.arm.run.arm)),
                None)


@dataclass(frozen=True)
class Direction:
    claim: str
    score: str  # the category ("reasoning", "knowledge", "code")
    rises: bool  # the study saw the score rise (so its bpb fall)
    study: str  # the study's number
    pick: Pick


DIRECTIONS = (
    Direction("balanced -> text after CPT over text-only", "reasoning", True, "+8.2%", _headline),
    Direction("balanced -> text after CPT over text-only", "knowledge", True, "+4.2%", _headline),
    Direction("balanced -> text after CPT over text-only", "code", True, "12x", _headline),
    Direction("25% code over 0% (the sweep's best reasoning)", "reasoning", True, "best at 25%", _sweep_point(25)),
    Direction("100% code against 0% (reasoning collapses)", "reasoning", False, "collapses", _sweep_point(100)),
    Direction("100% code against 0% (knowledge falls as code rises)", "knowledge", False, "falls steadily",
              _sweep_point(100)),
    Direction("10% synthetic code over web code only", "reasoning", True, "+9%", _quality("synthetic")),
    Direction("10% synthetic code over web code only", "code", True, "+44.9%", _quality("synthetic")),
    Direction("balanced -> text: cooldown with code over no cooldown", "reasoning", True, "+3.6%", _balanced_cooldown),
    Direction("balanced -> text: cooldown with code over no cooldown", "knowledge", True, "+10.1%", _balanced_cooldown),
    Direction("balanced -> text: cooldown with code over no cooldown", "code", True, "+20%", _balanced_cooldown),
)


@dataclass(frozen=True)
class Finding:
    direction: Direction
    verdict: str
    comparison: Comparison | None
    shown_by: tuple[str, ...]  # "accuracy", "bpb": which columns show it


def _side(delta: Delta | None, rises: bool) -> int:
    """+1: the interval excludes zero on the study's side, -1: on the other, 0: it crosses zero."""
    if delta is None or not excludes_zero(delta):
        return 0
    return 1 if (delta.absolute.low > 0) == rises else -1


def judge(direction: Direction, study: StudyComparisons) -> Finding:
    comparison = direction.pick(study)
    if comparison is None or direction.score not in comparison.deltas:
        return Finding(direction, ABSENT, comparison, ())
    sides = {"accuracy": _side(comparison.deltas.get(direction.score), direction.rises),
             "bpb": _side(comparison.deltas.get(direction.score + BPB_SUFFIX), not direction.rises)}
    shown = tuple(column for column, side in sides.items() if side > 0)
    contrary = any(side < 0 for side in sides.values())
    verdict = MIXED if shown and contrary else SHOWN if shown else CONTRARY if contrary else UNCLEAR
    return Finding(direction, verdict, comparison, shown)


def findings(study: StudyComparisons) -> list[Finding]:
    return [judge(direction, study) for direction in DIRECTIONS]


def findings_lines(found: list[Finding], level: float) -> list[str]:
    """The report's opening: a sentence of counts, then one line per direction with its numbers."""
    count = {verdict: sum(1 for f in found if f.verdict == verdict)
             for verdict in (SHOWN, CONTRARY, MIXED, UNCLEAR, ABSENT)}
    bpb_only = sum(1 for f in found if f.shown_by == ("bpb",))
    lines = [f"Of the study's {len(found)} directions checked here, this run shows {count[SHOWN]} "
             f"({bpb_only} of them in bits per byte only), contradicts {count[CONTRARY]}, is mixed on {count[MIXED]}, "
             f"cannot tell {count[UNCLEAR]} (both {level:.0%} intervals cross zero) and lacks the arms or scores "
             f"for {count[ABSENT]}:", ""]
    for finding in found:
        direction, comparison = finding.direction, finding.comparison
        head = f"- **{finding.verdict}**: {direction.claim}, {direction.score} (study: {direction.study})"
        if finding.verdict == ABSENT:
            lines.append(head + ": no evaluated pair of stages for it in these runs")
            continue
        bpb = direction.score + BPB_SUFFIX
        lines.append(f"{head}: accuracy {delta_text(direction.score, comparison.deltas.get(direction.score))}, "
                     f"bpb {delta_text(bpb, comparison.deltas.get(bpb))} "
                     f"({comparison.arm.run.label} vs {comparison.reference.run.label})")
    return lines


def significance_lines(rows: list[Row], study: StudyComparisons, level: float) -> list[str]:
    """How many deltas' intervals exclude zero, accuracy-style columns against the bpb ones, for
    Table 2's rows and for each figure's comparisons."""
    sections = [("Table 2 (vs the baselines)", [row.deltas for row in rows])]
    titles = {"Fig 6": "Fig 6 (cooldowns)", "Fig 4": "Fig 4 (sweep vs 0% code)", "Fig 5": "Fig 5 (quality vs web code)"}
    sections += [(titles[figure], [c.deltas for c in comparisons]) for figure, comparisons in study.compared]
    parts = []
    for title, deltas in sections:
        counts = [_excluding(deltas, names) for names in (SCORES, BPB_SCORES)]
        if any(total for _, total in counts):
            (acc, acc_total), (bpb, bpb_total) = counts
            parts.append(f"{title}: {acc} of {acc_total} in the accuracy columns, "
                         f"{bpb} of {bpb_total} in the bits-per-byte columns")
    if not parts:
        return []
    return [f"Deltas whose {level:.0%} interval excludes zero: " + "; ".join(parts) + "."]


def _excluding(deltas: list[dict[str, Delta]], names: tuple[str, ...]) -> tuple[int, int]:
    picked = [d[name] for d in deltas for name in names if name in d]
    return sum(1 for d in picked if excludes_zero(d)), len(picked)
