"""The stage-directory layout (see codemix.runs): every path of a stage is named here and nowhere else."""

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from codemix.atomic import write_json_atomic
from codemix.data.corpus import read_json
from codemix.errors import ConfigError
from codemix.model.checkpoint import WEIGHTS
from codemix.paths import runs_dir
from codemix.runs.lineage import Lineage, read_lineage

LINEAGE = "lineage.json"
FINAL = "final"
METRICS = "metrics.csv"
RESULTS = Path("eval") / "results.json"
CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"
SNAPSHOT_PREFIX = "tokens-"
SNAPSHOT_RESULTS = Path("eval") / SNAPSHOTS  # codemix eval's scores of each snapshot
LAST_CHECKPOINT = "last.ckpt"
PREVIOUS_CHECKPOINT = "previous.ckpt"  # the one before last.ckpt (codemix.train.resume)
STAGE_INDEX = "_stages"  # runs/_stages/<identity>: the index of completed stages, not a recipe

Home = str | os.PathLike | None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StageDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def previous_checkpoint(self) -> Path:
        return self.checkpoints / PREVIOUS_CHECKPOINT

    @property
    def final(self) -> Path:
        return self.path / FINAL

    @property
    def snapshots(self) -> Path:
        return self.path / SNAPSHOTS

    def snapshot(self, tokens: int) -> Path:
        """The weights-only snapshot taken after `tokens` tokens of the stage (zero-padded: sorts by name)."""
        return self.snapshots / f"{SNAPSHOT_PREFIX}{tokens:015d}"

    def snapshot_results(self, tokens: int) -> Path:
        """`codemix eval`'s scores of snapshot(tokens): eval/snapshots/tokens-N.json, beside final/'s."""
        return self.path / SNAPSHOT_RESULTS / f"{self.snapshot(tokens).name}.json"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def lineage_path(self) -> Path:
        return self.path / LINEAGE

    @property
    def attempts_path(self) -> Path:
        return self.path / "attempts.json"

    def lineage(self) -> Lineage | None:
        return read_lineage(self.lineage_path) if self.lineage_path.is_file() else None

    def is_complete(self) -> bool:
        lineage = self.lineage()
        return bool(lineage and lineage.completed and (self.final / WEIGHTS).is_file())

    def record_attempt(self, resumed_from: str | None) -> list[dict]:
        """Append this start (time, checkpoint resumed from or None) to attempts.json; returns all."""
        attempts = _read_attempts(self.attempts_path) if self.attempts_path.is_file() else []
        attempts.append({"started_at": utc_now(), "resumed_from": resumed_from})
        write_json_atomic(self.attempts_path, {"attempts": attempts})
        return attempts


def _read_attempts(path: Path) -> list[dict]:
    attempts = read_json(path).get("attempts")
    if not isinstance(attempts, list):
        raise ConfigError(f"{path}: 'attempts' is not a list")
    return attempts


def stage_dir(recipe_name: str, stage_name: str, identity: str, home: Home = None) -> StageDir:
    return StageDir(runs_dir(home) / recipe_name / f"{stage_name}-{identity}")


def snapshot_tokens(name: str) -> int | None:
    """The tokens a snapshot folder (tokens-N) or its results file (tokens-N.json) is named by; None
    for any other name."""
    digits = name.removeprefix(SNAPSHOT_PREFIX).removesuffix(".json")
    return int(digits) if name.startswith(SNAPSHOT_PREFIX) and digits.isdigit() else None


def is_stage_dir(path: Path) -> bool:
    return (path / LINEAGE).is_file()
