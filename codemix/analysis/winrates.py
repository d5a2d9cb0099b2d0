"""Generative win-rates from `codemix eval winrate` results, labelled with the report's rows.

A win-rate JSON holds both checkpoints' identities ("a", "b") and one outcome per prompt ("a", "b" or
"tie", after judging both answer orders); the interval is a bootstrap over prompts."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codemix.analysis.bootstrap import Interval, mean_interval
from codemix.analysis.table import BootstrapOptions, Row
from codemix.errors import ConfigError


@dataclass(frozen=True)
class WinRate:
    path: Path
    a: str
    b: str
    prompts: int
    wins_a: int
    wins_b: int
    ties: int
    win_rate_a: Interval  # percent
    win_rate_b: Interval  # percent


def read_winrates(paths: list[Path], rows: list[Row], options: BootstrapOptions) -> list[WinRate]:
    """Each file given, or every *.json in a directory given."""
    labels: dict[str, str] = {}
    for row in rows:  # a stage that arms share is named as in its first row (Table 2's order, baselines first)
        for run in row.seed_runs:
            labels.setdefault(run.identity, row.label_of(run))
    files = [f for path in paths for f in (sorted(Path(path).glob("*.json")) if Path(path).is_dir() else [Path(path)])]
    return [_winrate(f, labels, options) for f in files]


def _winrate(path: Path, labels: dict[str, str], options: BootstrapOptions) -> WinRate:
    try:
        raw = json.loads(path.read_text())
        outcomes = [record["outcome"] for record in raw["records"]]
        names = [_label(raw[side], labels) for side in ("a", "b")]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a codemix win-rate file: {type(err).__name__}: {err}") from err
    if not outcomes:
        raise ConfigError(f"{path}: a win-rate file without judged prompts")
    rates = [mean_interval(np.array([o == side for o in outcomes], dtype=float) * 100.0, options.resamples,
                           options.level, options.seed) for side in ("a", "b")]
    return WinRate(path, *names, len(outcomes), outcomes.count("a"), outcomes.count("b"), outcomes.count("tie"), *rates)


def _label(identity: dict, labels: dict[str, str]) -> str:
    """The report row of a stage, else what the identity says about the checkpoint."""
    if identity.get("identity") in labels:
        return labels[identity["identity"]]
    if identity.get("recipe") and identity.get("stage"):
        return f"{identity['recipe']}/{identity['stage']}"
    return str(identity.get("weights", "?"))
