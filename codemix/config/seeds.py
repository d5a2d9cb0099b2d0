"""A recipe once per seed: the runs `codemix reproduce --seeds N` (or `seed:` lists in a recipe) trains.

Run k of a recipe trains every stage with its k-th seed: a stage's `seed: [0, 1, 2]` gives runs with
seed 0, 1 and 2 (every stage of such a recipe lists as many, checked when it loads); `--seeds N` turns
each stage's single seed s into [s, s+1, ..., s+N-1]. A run is the recipe with one int seed per stage,
so its stages get their own identities, and a stage that arms share (same config, parent and seed)
is still one stage per seed: trained once. Run 0 of a single-seed recipe is the recipe itself (the
same identities as without seeds). A `recipe:` parent is the other recipe as written, in every run,
like a checkpoint parent."""

import dataclasses

from codemix.config.recipe_schema import Recipe
from codemix.errors import ConfigError


def seed_count(recipe: Recipe) -> int:
    """How many runs the recipe's own seed lists ask for (1 when no stage lists seeds)."""
    lengths = {len(stage.seed) for stage in recipe.stages.values() if isinstance(stage.seed, list)}
    return lengths.pop() if lengths else 1  # one length at most: checked when the recipe loads


def check_seeds_option(seeds: int | None) -> None:
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds {seeds}: must be at least 1")


def seed_runs(recipe: Recipe, seeds: int | None = None) -> list[Recipe]:
    """The recipe once per seed; `seeds` (from --seeds) must match the recipe's lists when it has some."""
    check_seeds_option(seeds)
    count = seed_count(recipe)
    listed = any(isinstance(stage.seed, list) for stage in recipe.stages.values())
    if seeds is not None and listed and seeds != count:
        raise ConfigError(f"{recipe.source_path}: its stages list {count} seeds each, while --seeds asks for {seeds}")
    if not listed and (seeds is None or seeds == 1):
        return [recipe]
    count = count if listed else seeds
    return [_run(recipe, k) for k in range(count)]


def _run(recipe: Recipe, k: int) -> Recipe:
    stages = {name: dataclasses.replace(stage, seed=stage.seed[k] if isinstance(stage.seed, list) else stage.seed + k)
              for name, stage in recipe.stages.items()}
    return dataclasses.replace(recipe, stages=stages)
