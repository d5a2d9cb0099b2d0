"""Where an evaluation reads its model from and writes its results.

A CHECKPOINT_OR_STAGE_DIR is either a pretrained folder (what load_pretrained reads) or a stage
directory of `codemix train`, whose weights are in final/ and whose identity is lineage.json. A stage's
snapshots (snapshots/tokens-N/) are pretrained folders too; their results go beside final/'s, in
eval/snapshots/tokens-N.json."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from codemix.atomic import write_json_atomic
from codemix.errors import ConfigError
from codemix.hashing import file_sha256
from codemix.leftovers import sweep_leftovers
from codemix.model.checkpoint import WEIGHTS
from codemix.runs.layout import FINAL, LINEAGE, RESULTS, SNAPSHOTS, StageDir, is_stage_dir, snapshot_tokens
from codemix.runs.lineage import Lineage


@dataclass(frozen=True)
class Target:
    weights_dir: Path  # the load_pretrained folder
    stage_dir: Path | None  # set when evaluating a training stage
    default_results: Path
    snapshot_tokens: int | None = None  # a snapshot's: the tokens of its stage trained when it was taken


def resolve_target(path: str | os.PathLike) -> Target:
    path = Path(path)
    if (path / FINAL / WEIGHTS).is_file():
        return Target(path / FINAL, path, path / RESULTS)
    if (path / WEIGHTS).is_file():
        tokens = snapshot_tokens(path.name)
        if path.parent.name == SNAPSHOTS and tokens is not None and is_stage_dir(path.parent.parent):
            stage = StageDir(path.parent.parent)
            return Target(path, stage.path, stage.snapshot_results(tokens), tokens)
        stage = path.parent if path.name == FINAL and (path.parent / LINEAGE).is_file() else None
        return Target(path, stage, (stage or path) / RESULTS)
    raise ConfigError(f"{path}: neither a checkpoint folder (no {WEIGHTS}) nor a stage directory (no {FINAL}/{WEIGHTS})")


def stage_checkpoints(path: str | os.PathLike) -> list[Target]:
    """Every checkpoint of a stage directory in training order: its snapshots, then final/. A snapshot
    taken at the stage's last step holds final/'s weights, so it is left to final/ (scored once)."""
    final = resolve_target(path)
    found = lineage(final)
    if found is None or final.snapshot_tokens is not None:
        raise ConfigError(f"{path}: not a stage directory (no {LINEAGE} beside {FINAL}/); "
                          "every checkpoint of a stage needs the stage's directory")
    stage = StageDir(final.stage_dir)
    folders = sorted(stage.snapshots.iterdir()) if stage.snapshots.is_dir() else []
    snapshots = [resolve_target(folder) for folder in folders
                 if snapshot_tokens(folder.name) is not None and (folder / WEIGHTS).is_file()]
    return [target for target in snapshots if target.snapshot_tokens < found.tokens] + [final]


def lineage(target: Target) -> Lineage | None:
    return None if target.stage_dir is None else StageDir(target.stage_dir).lineage()


def checkpoint_identity(target: Target) -> dict:
    """What was scored: the stage's lineage identity when there is one, and always the sha256 of the
    weights file, so results are never taken for those of other (retrained, corrupted) weights."""
    weights = target.weights_dir / WEIGHTS
    found = lineage(target)
    if found is not None:
        # a snapshot: also how far into the stage it was taken
        kind = {"kind": "stage"} if target.snapshot_tokens is None else {"kind": "snapshot",
                                                                          "tokens": target.snapshot_tokens}
        return {**kind, "identity": found.identity, "stage": found.stage,
                "recipe": found.recipe.name, "lineage": str(target.stage_dir / LINEAGE),
                "weights": str(weights), "sha256": file_sha256(weights)}
    return {"kind": "checkpoint", "weights": str(weights), "sha256": file_sha256(weights)}


def scored_current_weights(identity: dict) -> bool:
    """Whether the weights a results file scored (its "checkpoint" entry) are still those on disk."""
    weights = Path(identity.get("weights") or "")
    return bool(identity.get("sha256")) and weights.is_file() and file_sha256(weights) == identity["sha256"]


def scored_alike(target: Target, options: dict, task_names: list[str]) -> bool:
    """Whether the target's results file scored its weights as they are now (not another copy's), with
    these recorded options (EvalOptions.recorded), on exactly these tasks, none failed: reusable."""
    try:
        results = json.loads(target.default_results.read_text())
        scored = results["checkpoint"]
        return (scored["weights"] == str(target.weights_dir / WEIGHTS) and scored_current_weights(scored)
                and results["options"] == options and not results["failed"]
                and sorted(results["tasks"]) == sorted(task_names))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False  # missing, unreadable or from another format: score again


def check_results_path(path: Path) -> None:
    """Refuse, before any compute, a results path that is a folder or lies below a file."""
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if path.is_dir() or blocked is not None:
        raise ConfigError(f"{path}: {'is a folder' if blocked is None else f'{blocked} is a file'}; "
                          "give --out a file path for the results JSON")


def write_results(path: Path, results: dict) -> Path:
    """Atomic: a reader sees the previous results or the whole new file; the temp file of a writer
    killed mid-write is removed."""
    check_results_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json.dumps(results, allow_nan=True)  # fail before touching the file if it cannot be written
    sweep_leftovers(path)
    write_json_atomic(path, results)
    return path
