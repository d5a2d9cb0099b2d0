"""Reading a loaded recipe: its stages in order, where each starts from, and its resolved model."""

import re
from dataclasses import dataclass, fields
from pathlib import Path

from codemix.config.model import ModelConfig
from codemix.config.presets import preset
from codemix.config.recipe_schema import CHECKPOINT_PREFIX, RECIPE_PREFIX, SCRATCH, STAGE_PREFIX, Recipe, StageConfig
from codemix.errors import ConfigError

# Recipe and stage names become directory names (runs/<recipe>/<stage>-<identity>/).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ParentRef:
    """A parsed init_from.ref. kind: "scratch" | "stage" | "recipe" | "checkpoint"."""

    kind: str
    stage: str | None = None  # for "stage" and "recipe"
    path: Path | None = None  # for "recipe" and "checkpoint"


def stage_order(recipe: Recipe) -> list[str]:
    """Stage names in training order (the order the recipe's layers first name them)."""
    return list(recipe.stages)


def parent_of(recipe: Recipe, stage_name: str) -> ParentRef:
    """Where `stage_name` starts from (the recipe is validated, so the reference is well formed)."""
    return parse_parent_ref(stage_of(recipe, stage_name).init_from.ref)


def model_config(recipe: Recipe, vocab_size: int | None = None) -> ModelConfig:
    """The recipe's model: its preset with the `model:` overrides. `vocab_size` (the corpus's, known at
    training time) is used unless the recipe sets model.vocab_size itself."""
    try:
        return resolve_model(recipe, vocab_size)
    except ConfigError as err:
        raise ConfigError(f"{recipe.source_path}: key 'model': {err}") from err


def resolve_model(recipe: Recipe, vocab_size: int | None) -> ModelConfig:
    overrides = {f.name: getattr(recipe.model, f.name) for f in fields(ModelConfig)
                 if getattr(recipe.model, f.name) is not None}
    if vocab_size is not None:
        overrides.setdefault("vocab_size", vocab_size)
    return preset(recipe.model.preset, **overrides)


def parse_parent_ref(ref: str | None) -> ParentRef:
    """Parse an init_from.ref (null counts as scratch); ValueError says which forms exist."""
    if ref is None or ref == SCRATCH:
        return ParentRef(SCRATCH)
    if ref.startswith(STAGE_PREFIX) and ref[len(STAGE_PREFIX):]:
        return ParentRef("stage", stage=ref[len(STAGE_PREFIX):])
    if ref.startswith(RECIPE_PREFIX):
        path, sep, stage = ref[len(RECIPE_PREFIX):].rpartition("#")
        if sep and path and stage:
            return ParentRef("recipe", stage=stage, path=Path(path))
    if ref.startswith(CHECKPOINT_PREFIX) and ref[len(CHECKPOINT_PREFIX):]:
        return ParentRef("checkpoint", path=Path(ref[len(CHECKPOINT_PREFIX):]))
    raise ValueError(f"'{ref}' is not one of '{SCRATCH}', '{STAGE_PREFIX}<name>', "
                     f"'{RECIPE_PREFIX}<path>#<stage>', '{CHECKPOINT_PREFIX}<path>'")


def stage_of(recipe: Recipe, stage_name: str) -> StageConfig:
    if stage_name not in recipe.stages:
        raise ConfigError(f"{recipe.source_path}: no stage '{stage_name}' (stages: {stage_order(recipe)})")
    return recipe.stages[stage_name]
