"""Per-source validation loss along an arm, from the metrics.csv of each of its stages.

Training logs `val/loss/<source>` at its validation interval; Lightning's CSV rows carry the 0-based
index of the optimizer step they follow (the row after the first step has step 0), so a row stands
at (step + 1) x batch tokens into its stage. The x axis is tokens along the whole arm (the stage's
ancestors' tokens first), so init, CPT and cooldown join into one curve per source."""

import csv
from dataclasses import dataclass, field

from codemix.analysis.runs import StageRun

VAL_PREFIX = "val/loss/"


@dataclass
class Curve:
    tokens: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


def arm_curves(stages: list[StageRun]) -> dict[str, Curve]:
    """source -> validation loss curve over the arm's stages (given in training order)."""
    curves: dict[str, Curve] = {}
    for stage in stages:
        if not stage.metrics_path.is_file():
            continue
        with open(stage.metrics_path, newline="") as src:
            for row in csv.DictReader(src):
                for column, value in row.items():
                    if not (column.startswith(VAL_PREFIX) and value and row.get("step")):
                        continue
                    curve = curves.setdefault(column[len(VAL_PREFIX):], Curve())
                    curve.tokens.append(stage.tokens_before + (int(float(row["step"])) + 1) * stage.batch_tokens)
                    curve.loss.append(float(value))
    return curves


def curves_by_arm(stages: list[StageRun]) -> dict[str, dict[str, Curve]]:
    """arm -> its curves; an arm's stages include the ones it shares with other arms."""
    arms: dict[str, list[StageRun]] = {}
    for stage in stages:
        arms.setdefault(stage.arm, []).append(stage)
    return {arm: arm_curves(runs) for arm, runs in arms.items()}
