"""A stage's training records beside the run store: package versions, merged metrics, and its parent."""

import csv
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import torch

from codemix.atomic import atomic_file
from codemix.config.model import ModelConfig
from codemix.errors import ConfigError
from codemix.model.checkpoint import CONFIG, WEIGHTS, load_pretrained
from codemix.runs.layout import StageDir, is_stage_dir
from codemix.runs.lineage import Lineage
from codemix.train.module import CHECKPOINT_KEY

VERSIONED_PACKAGES = ("codemix", "torch", "lightning", "mosaicml-streaming", "tokenizers", "numpy", "omegaconf")


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
    lineage: Optional[Lineage]

    @classmethod
    def of_stage(cls, ref: str, stage: StageDir) -> "Parent":
        lineage = stage.lineage()
        checkpoint = stage.last_checkpoint if stage.last_checkpoint.is_file() else None
        return cls(ref, lineage.identity if lineage else None, stage.path, stage.final, checkpoint, lineage)

    @classmethod
    def of_path(cls, ref: str, path: Path) -> "Parent":
        """checkpoint:<path> is a stage directory, a save_pretrained folder or a Lightning .ckpt file."""
        if is_stage_dir(path):
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
