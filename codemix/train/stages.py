"""A stage on disk: its directory, lineage, metrics, the cache of completed stages, and its parent.

    <runs>/<recipe>/<stage>-<identity>/
        checkpoints/last.ckpt   Lightning checkpoint (model, optimizer, LR step, loader position,
                                tokens per source), rewritten atomically at each interval and at the end
        checkpoints/previous.ckpt  the interval checkpoint before last.ckpt, while the stage runs: where
                                a re-run resumes when last.ckpt is unreadable (set aside as
                                last.ckpt.unusable-<time>)
        final/                  save_pretrained: model.safetensors, model_config.json, tokenizer.json
        logs/csv/version_N/     one CSV (and TensorBoard) version per start of the stage
        metrics.csv             all versions merged: the rows of an interrupted start that a resume
                                retrained are replaced by the resumed ones
        attempts.json           when each start began and from which step
        lineage.json            written last: its "completed": true makes the stage reusable
    <runs>/_stages/<identity>   symlink to the stage directory that completed with that identity, so
                                another recipe sharing the stage finds it without retraining it
"""

import csv
import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import torch

from codemix.atomic import atomic_file, write_json_atomic
from codemix.data.corpus import read_json
from codemix.errors import ConfigError
from codemix.model.checkpoint import CONFIG, WEIGHTS, load_pretrained
from codemix.config.model import ModelConfig
from codemix.paths import runs_dir
from codemix.train.checkpoint_io import LAST_CHECKPOINT, PREVIOUS_CHECKPOINT
from codemix.train.module import CHECKPOINT_KEY

STAGE_INDEX = "_stages"
LINEAGE = "lineage.json"
VERSIONED_PACKAGES = ("codemix", "torch", "lightning", "mosaicml-streaming", "tokenizers", "numpy", "omegaconf")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StageDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def previous_checkpoint(self) -> Path:
        return self.checkpoints / PREVIOUS_CHECKPOINT

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def lineage_path(self) -> Path:
        return self.path / LINEAGE

    @property
    def attempts_path(self) -> Path:
        return self.path / "attempts.json"

    def lineage(self) -> Optional[dict]:
        return read_json(self.lineage_path) if self.lineage_path.is_file() else None

    def is_complete(self) -> bool:
        lineage = self.lineage()
        return bool(lineage and lineage.get("completed") is True and (self.final / WEIGHTS).is_file())

    def record_attempt(self, resumed_from: Optional[str]) -> list[dict]:
        """Append this start (time, checkpoint resumed from or None) to attempts.json; returns all."""
        attempts = read_json(self.attempts_path)["attempts"] if self.attempts_path.is_file() else []
        attempts.append({"started_at": utc_now(), "resumed_from": resumed_from})
        write_json_atomic(self.attempts_path, {"attempts": attempts})
        return attempts


def stage_dir(recipe_name: str, stage_name: str, identity: str, home: Optional[str | os.PathLike] = None) -> StageDir:
    return StageDir(runs_dir(home) / recipe_name / f"{stage_name}-{identity}")


# ---- the cache of completed stages ---------------------------------------------------------------
def _index_entry(identity: str, home: Optional[str | os.PathLike]) -> Path:
    return runs_dir(home) / STAGE_INDEX / identity


def find_completed(identity: str, home: Optional[str | os.PathLike] = None) -> Optional[StageDir]:
    """The completed stage with this identity, from any recipe, or None."""
    entry = _index_entry(identity, home)
    if not entry.exists():
        return None
    found = StageDir(entry.resolve())
    return found if found.is_complete() else None


def register_completed(identity: str, stage: StageDir, home: Optional[str | os.PathLike] = None) -> None:
    """Point the index at `stage` (atomically: a relative symlink renamed into place)."""
    entry = _index_entry(identity, home)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{identity}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(stage.path, entry.parent))
    os.replace(tmp, entry)


def link_into_recipe(found: StageDir, wanted: StageDir) -> None:
    """Make a reused stage visible under this recipe's run directory too (a symlink to the original)."""
    if wanted.path.exists() or wanted.path.is_symlink() or found.path == wanted.path.resolve():
        return
    wanted.path.parent.mkdir(parents=True, exist_ok=True)
    wanted.path.symlink_to(os.path.relpath(found.path, wanted.path.parent))


# ---- lineage ---------------------------------------------------------------------------------------
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["cuda"] = torch.version.cuda or "none"
    return versions


def cumulative_tokens(parent_lineage: Optional[dict], stage_tokens: dict[str, int]) -> dict[str, int]:
    """Tokens per source seen along the whole lineage up to and including this stage."""
    total = dict(parent_lineage.get("cumulative_tokens_per_source", {})) if parent_lineage else {}
    for source, tokens in stage_tokens.items():
        total[source] = total.get(source, 0) + tokens
    return total


def write_lineage(stage: StageDir, payload: dict[str, Any]) -> None:
    write_json_atomic(stage.lineage_path, {**payload, "completed": True})


# ---- metrics ---------------------------------------------------------------------------------------
def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as src:
        return list(csv.DictReader(src))


def merge_metrics(stage: StageDir) -> Path:
    """Merge the CSV logs of every start of the stage into stage/metrics.csv, one row per step: a later
    start resumed from an earlier step, so earlier rows from that step on are replaced by its rows."""
    versions = sorted((stage.logs / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    by_step: dict[int, dict[str, str]] = {}  # one row per step: train, throughput and validation together
    for path in versions:
        newer = [row for row in read_metrics(path) if row.get("step")]
        if newer:
            resumed_at = min(int(row["step"]) for row in newer)
            by_step = {step: row for step, row in by_step.items() if step < resumed_at}
        for row in newer:
            by_step.setdefault(int(row["step"]), {}).update({k: v for k, v in row.items() if v != ""})
    rows = [by_step[step] for step in sorted(by_step)]
    columns = sorted({key for row in rows for key in row}, key=lambda k: (k != "step", k))
    with atomic_file(stage.metrics, "w") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return stage.metrics


# ---- where a stage starts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Parent:
    """A stage's starting point. weights_dir: a save_pretrained folder. checkpoint: a Lightning
    checkpoint holding optimizer state (None when the parent has none). lineage: the parent stage's."""

    ref: str
    identity: Optional[str]
    path: Path
    weights_dir: Optional[Path]
    checkpoint: Optional[Path]
    lineage: Optional[dict]

    @classmethod
    def of_stage(cls, ref: str, stage: StageDir) -> "Parent":
        lineage = stage.lineage()
        checkpoint = stage.last_checkpoint if stage.last_checkpoint.is_file() else None
        return cls(ref, lineage["identity"] if lineage else None, stage.path, stage.final, checkpoint, lineage)

    @classmethod
    def of_path(cls, ref: str, path: Path) -> "Parent":
        """checkpoint:<path> is a stage directory, a save_pretrained folder or a Lightning .ckpt file."""
        if (path / LINEAGE).is_file():
            return cls.of_stage(ref, StageDir(path))
        if (path / WEIGHTS).is_file() and (path / CONFIG).is_file():
            return cls(ref, None, path, path, None, None)
        if path.is_file():
            return cls(ref, None, path, None, path, None)
        raise ConfigError(f"init_from '{ref}': {path} is neither a stage directory, a pretrained-model folder "
                          f"({WEIGHTS} + {CONFIG}) nor a Lightning checkpoint file")

    def weights(self, expected: ModelConfig) -> dict[str, torch.Tensor]:
        """The parent's model weights, after checking they were trained with the same architecture."""
        if self.weights_dir is not None:
            model, cfg, _ = load_pretrained(self.weights_dir)
            state, where = model.state_dict(), self.weights_dir / CONFIG
        else:
            cfg, state = weights_from_checkpoint(self.checkpoint, self.ref)
            where = self.checkpoint
        if cfg != expected:
            raise ConfigError(f"init_from '{self.ref}': the parent's model ({where}: {cfg}) "
                              f"differs from this stage's ({expected})")
        return state

    def optimizer_state(self) -> dict[str, Any]:
        if self.checkpoint is None:
            raise ConfigError(f"init_from '{self.ref}' with load_optimizer: {self.path} holds weights only, "
                              "no optimizer state (point at a stage directory or a Lightning .ckpt)")
        return read_training_checkpoint(self.checkpoint, self.ref)["optimizer_states"][0]


def read_training_checkpoint(path: Path, wanted_by: str = "") -> dict[str, Any]:
    """A codemix Lightning checkpoint as a dict (on the CPU); `wanted_by` names who asked, for errors."""
    where = f"init_from '{wanted_by}': " if wanted_by else ""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ConfigError(f"{where}{path} is not a readable checkpoint: {err}") from err
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise ConfigError(f"{where}{path} is not a codemix training checkpoint")
    return checkpoint


def weights_from_checkpoint(path: Path, wanted_by: str = "") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The Decoder config and weights stored in a codemix Lightning checkpoint."""
    checkpoint = read_training_checkpoint(path, wanted_by)
    cfg = ModelConfig.from_dict(checkpoint[CHECKPOINT_KEY]["model_config"], origin=str(path))
    prefix = "model."
    return cfg, {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
