"""The study's comparisons beyond Table 2, each a paired bootstrap delta between two evaluated stages:

    Fig 6  cooldown:  within an arm, each cooldown against the stage it starts from (no cooldown),
                      and the cooldown with code against the cooldown without code from the same stage
    Fig 4  sweep:     the code-fraction sweep ('...sweep-code-N' arms) against its 0% model, as
                      curves over the share of code the model saw
    Fig 5  quality:   the code-quality arms ('...quality-X') against web code only ('...quality-web')
    headline:         balanced -> text after CPT against text-only before its cooldown (of the same
                      model size), the study's headline numbers

Fig 4's and Fig 5's arms are compared per model size, as Table 2 matches its baselines
(codemix/analysis/baselines.py): each sweep with its own 0% model, each quality arm with the web
code arm of its size.

Every delta has the accuracy-style scores and their bits-per-byte twins (codemix/analysis/table.py),
over seeds and examples when the stages were trained once per seed. A pair of stages is bootstrapped
once however many comparisons name it."""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from codemix.analysis.baselines import has_code, model_size
from codemix.analysis.bootstrap import Delta
from codemix.analysis.kinds import text_and_code
from codemix.analysis.table import BootstrapOptions, Row, score_deltas

SWEEP_ARM = re.compile(r"sweep[-_]code[-_](\d+)$")
QUALITY_ARM = re.compile(r"quality[-_](\w+)$")
WEB_CODE = "web"
BALANCED_TO_TEXT = re.compile(r"(^|[-_])balanced[-_]to[-_]text$")
TEXT_ONLY = re.compile(r"(^|[-_])text[-_]only$")

T = TypeVar("T")

COOLDOWN_WITH_CODE = "cooldown with code vs none"
COOLDOWN_WITHOUT_CODE = "cooldown without code vs none"
WITH_VS_WITHOUT = "cooldown with code vs without"


@dataclass(frozen=True)
class Comparison:
    kind: str  # e.g. "cooldown with code vs none", "25% code vs 0%", "synthetic vs web"
    arm: Row
    reference: Row
    deltas: dict[str, Delta]  # score (or its _bpb twin) -> arm minus reference


@dataclass(frozen=True)
class SweepPoint:
    row: Row
    nominal: int  # the N of '...sweep-code-N'
    code_share: float  # the share of code in every token the model saw (observed)
    vs_zero: Comparison | None  # against the 0% model; None for the 0% model itself or when unscored
    heldout_change: dict[str, float]  # source -> held-out bpb minus the 0% model's


@dataclass(frozen=True)
class StudyComparisons:
    cooldown: list[Comparison]  # Fig 6
    sweep: list[SweepPoint]  # Fig 4, by model size (smallest first), then code share
    quality: list[Comparison]  # Fig 5, by model size
    headline: Comparison | None

    @property
    def compared(self) -> list[tuple[str, list[Comparison]]]:
        """Each figure's comparisons, for tables and counts."""
        return [("Fig 6", self.cooldown), ("Fig 4", [p.vs_zero for p in self.sweep if p.vs_zero]),
                ("Fig 5", self.quality)]


class _Comparer:
    """Pairs of stages to deltas, each pair bootstrapped once; Table 2's deltas are reused as they are."""

    def __init__(self, rows: list[Row], options: BootstrapOptions):
        self.options = options
        self.done = {(row.run.identity, row.baseline.run.identity): row.deltas for row in rows if row.deltas}

    def __call__(self, kind: str, arm: Row, reference: Row) -> Comparison | None:
        if arm.scores is None or reference.scores is None or arm.run.identity == reference.run.identity:
            return None
        key = (arm.run.identity, reference.run.identity)
        if key not in self.done:
            self.done[key] = score_deltas(arm.seed_scores, reference.seed_scores, self.options)
        return Comparison(kind, arm, reference, self.done[key])


def build_comparisons(rows: list[Row], options: BootstrapOptions = BootstrapOptions()) -> StudyComparisons:
    compare = _Comparer(rows, options)
    return StudyComparisons(_cooldowns(rows, compare), _sweep(rows, compare), _quality(rows, compare),
                            _headline(rows, compare))


def _first_rows(rows: list[Row]) -> dict[str, Row]:
    """identity -> the row that shows the stage first (shared stages appear once, under the first arm)."""
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row.run.identity, row)
    return first


def _cooldowns(rows: list[Row], compare: _Comparer) -> list[Comparison]:
    """Per stage that cooldowns start from: each cooldown against it, with code against without."""
    first = _first_rows(rows)
    by_parent: dict[str, list[Row]] = {}
    for row in first.values():  # a cooldown two arms share is one cooldown
        if row.is_cooldown and row.run.parent_identity in first:
            by_parent.setdefault(row.run.parent_identity, []).append(row)
    comparisons = []
    for parent, cooldowns in by_parent.items():
        with_code = [row for row in cooldowns if has_code(row.run)]
        without = [row for row in cooldowns if not has_code(row.run)]
        pairs = [(COOLDOWN_WITH_CODE, row, first[parent]) for row in with_code]
        pairs += [(COOLDOWN_WITHOUT_CODE, row, first[parent]) for row in without]
        pairs += [(WITH_VS_WITHOUT, a, b) for a in with_code for b in without]
        comparisons += [c for pair in pairs if (c := compare(*pair)) is not None]
    return comparisons


def by_model_size(items: Iterable[T], row_of: Callable[[T], Row]) -> list[tuple[int | None, list[T]]]:
    """The items grouped by their row's model size (baselines.model_size, Table 2's rule), smallest
    first and unrecorded sizes before them, each group in the items' order."""
    groups: dict[int | None, list[T]] = {}
    for item in items:
        groups.setdefault(model_size(row_of(item).run), []).append(item)
    return sorted(groups.items(), key=lambda group: (group[0] is not None, group[0] or 0))


def _last_of_arms(rows: list[Row], pattern: re.Pattern) -> list[list[tuple[re.Match, Row]]]:
    """Per model size: (its name's match, its last row) for each arm whose name matches."""
    last = {}
    for row in rows:
        if match := pattern.search(row.run.arm):
            last[row.run.arm] = (match, row)
    return [arms for _, arms in by_model_size(last.values(), lambda arm: arm[1])]


def code_share(row: Row) -> float:
    """The share of code among the text and code tokens of the stage and its ancestors."""
    text, code = text_and_code(row.run.tokens_by_kind(cumulative=True))
    return code / (text + code) if text + code else 0.0


def _sweep(rows: list[Row], compare: _Comparer) -> list[SweepPoint]:
    return [point for arms in _last_of_arms(rows, SWEEP_ARM) for point in _sweep_of_size(arms, compare)]


def _sweep_of_size(arms: list[tuple[re.Match, Row]], compare: _Comparer) -> list[SweepPoint]:
    points = [(int(match.group(1)), row) for match, row in arms]
    zero = next((row for nominal, row in points if nominal == 0), None)
    sweep = []
    for nominal, row in sorted(points, key=lambda point: (code_share(point[1]), point[0])):
        vs_zero = None if zero is None or row is zero else compare(f"{nominal}% code vs 0%", row, zero)
        heldout = {} if zero is None or row.scores is None or zero.scores is None else {
            source: bpb - zero.scores.heldout_bpb[source]
            for source, bpb in row.scores.heldout_bpb.items() if source in zero.scores.heldout_bpb}
        sweep.append(SweepPoint(row, nominal, code_share(row), vs_zero, heldout))
    return sweep


def _quality(rows: list[Row], compare: _Comparer) -> list[Comparison]:
    comparisons = []
    for same_size in _last_of_arms(rows, QUALITY_ARM):
        arms = {match.group(1): row for match, row in same_size}
        if (web := arms.get(WEB_CODE)) is not None:
            comparisons += [c for name, row in arms.items() if row is not web
                            and (c := compare(f"{name.replace('_', '-')} vs web code only", row, web)) is not None]
    return comparisons


def _headline(rows: list[Row], compare: _Comparer) -> Comparison | None:
    """balanced -> text's last stage before its cooldown against text-only's, of the same size."""
    def before_cooldown(pattern: re.Pattern) -> list[Row]:
        last = {row.run.arm: row for row in rows if pattern.search(row.run.arm) and not row.is_cooldown}
        return list(last.values())

    bases = before_cooldown(TEXT_ONLY)
    for arm in before_cooldown(BALANCED_TO_TEXT):
        same_size = [base for base in bases if model_size(base.run) == model_size(arm.run)]
        if same_size and (headline := compare("balanced -> text after CPT vs text-only", arm, same_size[0])):
            return headline
    return None
