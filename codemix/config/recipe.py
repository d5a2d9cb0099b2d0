"""Loading a recipe: compose its layers (config/compose.py), settle its spelling, then check it
(config/validate.py), all before any compute. A failure is a ConfigError naming the key and the file
(the last layer that set the key) that holds the bad value."""

import os
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from codemix.config.compose import Layer, expand_stage_defaults, file_layers, override_layers, replace_mixtures, settle
from codemix.config.loading import merge_typed, read_yaml
from codemix.config.recipe_schema import Recipe, RecipeSchema
from codemix.config.validate import Validator
from codemix.errors import ConfigError
from codemix.paths import natural_key


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] | None = None) -> Recipe:
    """Compose, type-check and validate the recipe at `path`; see the module docstring."""
    return _load(Path(path).resolve(), list(overrides or []), loading=())


def value_origins(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, str]:
    """Each key the recipe's layers set (dotted, e.g. stages.pt.tokens) -> the file (or "command line")
    whose value won; keys no layer sets keep the schema's default."""
    origins: dict[str, str] = {}
    for layer in _merge_order(file_layers(Path(path).resolve(), including=()), list(overrides)):
        origins.update({key: layer.origin for key in _leaf_keys(layer.config)})
    return origins


def recipe_files(directory: Path) -> list[Path]:
    """The YAML files directly in `directory` that are recipes (have a top-level `name`)."""
    files = [path for path in sorted(directory.glob("*.yaml"), key=natural_key) if "name" in read_yaml(path)]
    if not files:
        raise ConfigError(f"{directory}: no recipe in it (a *.yaml file with a top-level 'name')")
    return files


def _merge_order(own_layers: list[Layer], overrides: list[str]) -> list[Layer]:
    """The file's layers (bases first) and the overrides, in the order they merge."""
    return replace_mixtures(expand_stage_defaults(own_layers + override_layers(overrides)))


def _leaf_keys(config: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in config:
        value = config._get_node(key)
        name = f"{prefix}{key}"
        keys += _leaf_keys(value, name + ".") if isinstance(value, DictConfig) else [name]
    return keys


def _load(path: Path, overrides: list[str], loading: tuple[Path, ...]) -> Recipe:
    if path in loading:
        chain = " -> ".join(str(p) for p in loading + (path,))
        raise ConfigError(f"{path}: recipes start from each other in a cycle: {chain}")
    own_layers = file_layers(path, including=())
    layers = _merge_order(own_layers, overrides)
    loaded = merge_typed(RecipeSchema, *((layer.config, layer.origin) for layer in layers))
    recipe = Recipe(**{f.name: getattr(loaded, f.name) for f in fields(RecipeSchema)},
                    source_path=str(path), base_chain=[layer.origin for layer in own_layers[:-1]])
    validator = Validator(recipe, layers, loading + (path,), load_parent=lambda p, chain: _load(p, [], chain))
    settle(recipe, validator.origin)
    validator.run()
    return recipe
