"""A completed stage's lineage: what it trained, from what, on what, and how it went.

Written once as lineage.json (last, so "completed": true marks a reusable stage) and read back as the
same dataclass by training (a child's parent), eval (what was scored) and the report. The JSON keeps
the layout earlier codemix versions wrote, so stages already on disk read unchanged; fields those
versions lacked default to empty, and keys this version does not know are ignored."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codemix.atomic import write_json_atomic
from codemix.data.corpus import read_json
from codemix.errors import ConfigError


@dataclass(frozen=True)
class RecipeLink:
    name: str = ""
    path: str = ""
    base_chain: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ParentLink:
    ref: str
    identity: str | None
    path: str
    load_optimizer: bool = False


@dataclass(frozen=True)
class CorpusLink:
    name: str = ""
    path: str = ""
    tokenizer_hash: str = ""


@dataclass(frozen=True)
class Lineage:
    identity: str
    stage: str = ""
    recipe: RecipeLink = field(default_factory=RecipeLink)
    parent: ParentLink | None = None
    corpus: CorpusLink = field(default_factory=CorpusLink)
    model: dict[str, Any] = field(default_factory=dict)
    parameters: int | None = None
    stage_config: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0
    tokens_per_source: dict[str, int] = field(default_factory=dict)
    cumulative_tokens_per_source: dict[str, int] = field(default_factory=dict)
    mixture: list[dict[str, Any]] = field(default_factory=list)  # target vs observed share per source
    final_metrics: dict[str, float] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str = ""  # ISO 8601 UTC: compares as text
    wall_time_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    cwd: str = ""
    completed: bool = False

    @property
    def batch_tokens(self) -> int:
        return int(self.stage_config.get("global_batch", 0)) * int(self.stage_config.get("seq_len", 0))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], origin: str) -> "Lineage":
        if not isinstance(data.get("identity"), str):
            raise ConfigError(f"{origin}: lineage has no identity")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        try:
            values["recipe"] = RecipeLink(**(values.get("recipe") or {}))
            values["corpus"] = CorpusLink(**(values.get("corpus") or {}))
            if values.get("parent") is not None:
                values["parent"] = ParentLink(**values["parent"])
            return cls(**values)
        except TypeError as err:
            raise ConfigError(f"{origin}: malformed lineage: {err}") from err


def cumulative_tokens(parent: Lineage | None, stage_tokens: dict[str, int]) -> dict[str, int]:
    """Tokens per source seen along the whole lineage up to and including this stage."""
    total = dict(parent.cumulative_tokens_per_source) if parent else {}
    for source, tokens in stage_tokens.items():
        total[source] = total.get(source, 0) + tokens
    return total


def read_lineage(path: Path) -> Lineage:
    return Lineage.from_json(read_json(path), str(path))


def write_lineage(path: Path, lineage: Lineage) -> None:
    write_json_atomic(path, dataclasses.replace(lineage, completed=True).to_json())
