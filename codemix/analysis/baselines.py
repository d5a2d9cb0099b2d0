"""Which baseline stage each Table 2 row is compared with: matched per comparison.

The baseline arms are, by default, those named '...text-only' and '...text-only-cooldown-text' (one
pair per model size: paper-470m-text-only, paper-2p8b-text-only). A row is compared with a stage of
those arms that is
- of the same model size (the parameter count its lineage records), and
- of the same kind: a cooldown with code with the baseline's cooldown with code, a cooldown without
  code with the baseline's cooldown without code, any other stage with the baseline's last stage
  before its cooldown (the study compares cooled-down models with cooled-down ones).
When the baseline arms have no cooldown of the matching kind, a cooldown takes the other kind and
the row says so. `--baseline ARM` makes ARM the only baseline arm, of whatever model size."""

import re
from typing import TYPE_CHECKING

from codemix.analysis.runs import StageRun
from codemix.errors import ConfigError

if TYPE_CHECKING:
    from codemix.analysis.table import Row

COOLDOWN = "cooldown"
DEFAULT_BASELINE = re.compile(r"(^|[-_])text[-_]only([-_]cooldown[-_]text)?$")


def baseline_arms(arms: list[str], wanted: str | None) -> list[str]:
    """The arms whose stages are baselines: the one given, else the text-only family."""
    if wanted is not None:
        if wanted not in arms:
            raise ConfigError(f"--baseline {wanted!r}: no such arm among the runs ({', '.join(arms)})")
        return [wanted]
    return [arm for arm in arms if DEFAULT_BASELINE.search(arm)]


def model_size(run: StageRun) -> int | None:
    """The stage's parameter count (None in lineage written without it: then every size matches)."""
    size = run.lineage.parameters
    return None if size is None else int(size)


def is_cooldown(run: StageRun) -> bool:
    return run.stage == COOLDOWN


def has_code(run: StageRun) -> bool:
    """Whether the stage itself trained on code (a cooldown with code, as opposed to without)."""
    return run.text_and_code_tokens()[1] > 0


def kind_of(run: StageRun) -> str:
    if not is_cooldown(run):
        return "before its cooldown"
    return "cooldown with code" if has_code(run) else "cooldown without code"


def match_baseline(row: "Row", baseline_rows: list["Row"], same_size: bool = True) -> tuple["Row | None", str | None]:
    """(the baseline row, a note when the match is not of the row's own kind). A baseline row is its
    own baseline: it gets no deltas."""
    if any(candidate is row for candidate in baseline_rows):
        return row, None
    if same_size:
        baseline_rows = [r for r in baseline_rows if model_size(r.run) == model_size(row.run)]
    stages = [r for r in baseline_rows if is_cooldown(r.run) == is_cooldown(row.run)]
    if not stages:
        return None, None
    matched = [r for r in stages if kind_of(r.run) == kind_of(row.run)]
    if matched:
        return matched[-1], None  # the last in training order: the stage right before a cooldown
    other = stages[-1]
    return other, f"the baseline arms have no {kind_of(row.run)} of this model size: compared with {kind_of(other.run)}"
