"""Loading a recipe: compose its layers (config/compose.py), settle its spelling, then check it
(config/validate.py), all before any compute. A failure is a ConfigError naming the key and the file
(the last layer that set the key) that holds the bad value."""

import os
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from codemix.config.compose import expand_stage_defaults, file_layers, override_layers, replace_mixtures, settle
from codemix.config.loading import merge_typed
from codemix.config.recipe_schema import Recipe, RecipeSchema
from codemix.config.validate import Validator
from codemix.errors import ConfigError


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] | None = None) -> Recipe:
    """Compose, type-check and validate the recipe at `path`; see the module docstring."""
    return _load(Path(path).resolve(), list(overrides or []), loading=())


def _load(path: Path, overrides: list[str], loading: tuple[Path, ...]) -> Recipe:
    if path in loading:
        chain = " -> ".join(str(p) for p in loading + (path,))
        raise ConfigError(f"{path}: recipes start from each other in a cycle: {chain}")
    own_layers = file_layers(path, including=())
    layers = replace_mixtures(expand_stage_defaults(own_layers + override_layers(overrides)))
    loaded = merge_typed(RecipeSchema, *((layer.config, layer.origin) for layer in layers))
    recipe = Recipe(**{f.name: getattr(loaded, f.name) for f in fields(RecipeSchema)},
                    source_path=str(path), base_chain=[layer.origin for layer in own_layers[:-1]])
    validator = Validator(recipe, layers, loading + (path,), load_parent=lambda p, chain: _load(p, [], chain))
    settle(recipe, validator.origin)
    validator.run()
    return recipe
