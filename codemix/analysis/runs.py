"""Finding the trained stages a report covers, and what each one trained on.

The layout is the run store's (codemix.runs); a stage that two
recipes share lives once and is linked into the second recipe's directory, so the directory a stage
is FOUND in names the arm it belongs to in the report, while its identity says it is the same stage.
An arm trained once per seed (`codemix reproduce --seeds N`) holds one stage dir per seed under each
stage name; the seed its lineage records (the stage's `seed`) tells them apart."""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable

from codemix.analysis.kinds import text_and_code
from codemix.errors import ConfigError
from codemix.paths import natural_key
from codemix.runs.layout import LINEAGE, STAGE_INDEX, StageDir, is_stage_dir
from codemix.runs.lineage import Lineage


@dataclass(frozen=True)
class StageRun:
    arm: str  # the recipe run directory the stage was found in
    path: Path
    lineage: Lineage

    @property
    def stage(self) -> str:
        """The stage's name in this arm (its directory is <stage>-<identity>)."""
        name, _, identity = self.path.name.rpartition("-")
        return name if name and identity == self.identity else (self.lineage.stage or self.path.name)

    @property
    def identity(self) -> str:
        return self.lineage.identity

    @property
    def seed(self) -> int:
        """The seed the stage trained with (initialisation and data order); 0 in lineage without it."""
        return int(self.lineage.stage_config.get("seed", 0))

    @property
    def parent_identity(self) -> str | None:
        return self.lineage.parent.identity if self.lineage.parent else None

    @property
    def label(self) -> str:
        return f"{self.arm}/{self.stage}"

    @cached_property
    def kinds(self) -> dict[str, str]:
        """source -> kind, from the stage's target-vs-observed table."""
        return {row["source"]: row["kind"] for row in self.lineage.mixture}

    def tokens_by_kind(self, cumulative: bool = False) -> dict[str, int]:
        per_source = self.lineage.cumulative_tokens_per_source if cumulative else self.lineage.tokens_per_source
        by_kind: dict[str, int] = {}
        for source, tokens in per_source.items():
            kind = self.kinds.get(source, source)
            by_kind[kind] = by_kind.get(kind, 0) + int(tokens)
        return by_kind

    def text_and_code_tokens(self) -> tuple[float, float]:
        """The tokens this stage itself added, as the study's text and code columns."""
        return text_and_code(self.tokens_by_kind())

    @property
    def tokens_before(self) -> int:
        """Tokens of every ancestor stage: where this stage starts on the arm's token axis."""
        return sum(self.lineage.cumulative_tokens_per_source.values()) - self.lineage.tokens

    @property
    def batch_tokens(self) -> int:
        return self.lineage.batch_tokens

    @property
    def results_path(self) -> Path:
        return StageDir(self.path).results

    @property
    def metrics_path(self) -> Path:
        return StageDir(self.path).metrics


def find_stages(paths: Iterable[Path]) -> list[StageRun]:
    """Every completed stage under `paths`, each a stage dir, a recipe run dir (runs/<recipe>) or a
    runs root; in the order given, arms sorted by name (numbers by value) within a directory, and each arm's stages in
    training order (parents first)."""
    found: list[StageRun] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"{path}: no such run directory")
        before = len(found)
        found += _walk(path)
        if len(found) == before:
            raise ConfigError(f"{path}: no completed stage (a directory with a {LINEAGE} marked completed) in it")
    seen: set[tuple[str, str]] = set()
    unique = []
    for run in found:  # the same directory given twice (a root and one of its arms) counts once
        if (run.arm, run.identity) not in seen:
            seen.add((run.arm, run.identity))
            unique.append(run)
    return _in_training_order(unique)


def latest_per_stage(runs: list[StageRun]) -> tuple[list[StageRun], list[StageRun]]:
    """(kept, superseded): when an arm's directory holds two stages of one name and seed (its recipe
    was edited and trained again, so the old stage dir with its old identity is still there), the one
    finished last is the arm's stage now. Stages of one name with different seeds are all kept."""
    latest: dict[tuple[str, str, int], StageRun] = {}
    for run in runs:
        key = _seeded_stage(run)
        if key not in latest or _finished(run) > _finished(latest[key]):
            latest[key] = run
    kept = [run for run in runs if latest[_seeded_stage(run)] is run]
    return kept, [run for run in runs if latest[_seeded_stage(run)] is not run]


def _seeded_stage(run: StageRun) -> tuple[str, str, int]:
    return run.arm, run.stage, run.seed


def _finished(run: StageRun) -> str:
    return run.lineage.finished_at  # ISO 8601 UTC: compares as text


def _walk(path: Path) -> list[StageRun]:
    if is_stage_dir(path):
        stage = _stage_run(path.parent.name, path)
        return [stage] if stage else []
    children = sorted((child for child in path.iterdir() if child.is_dir() and child.name != STAGE_INDEX), key=natural_key)
    if any(is_stage_dir(child) for child in children):
        return [stage for child in children if (stage := _stage_run(path.name, child))]
    return [stage for child in children for stage in _walk(child)]


def _stage_run(arm: str, path: Path) -> StageRun | None:
    lineage = StageDir(path).lineage()
    return StageRun(arm, path, lineage) if lineage is not None and lineage.completed else None


def _in_training_order(runs: list[StageRun]) -> list[StageRun]:
    """Arms in first-seen order; within an arm, by depth in the lineage (from-scratch stages first)."""
    by_identity = {run.identity: run for run in runs}

    def depth(run: StageRun) -> int:
        steps, parent = 0, run.parent_identity
        while parent is not None and parent in by_identity and steps < len(runs):
            steps, parent = steps + 1, by_identity[parent].parent_identity
        return steps

    arms = list(dict.fromkeys(run.arm for run in runs))
    return sorted(runs, key=lambda run: (arms.index(run.arm), depth(run)))
