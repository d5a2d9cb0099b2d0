"""Composing a recipe from its layers, lowest priority first:
1. `base: [a.yaml, ...]` files (recursively, each with its own bases first), in the order listed;
2. the recipe file itself;
3. command-line `key=value` overrides (`stages.cooldown.tokens=2097152`), in the order given.
`stage_defaults:` in any layer is a partial stage merged under every stage; a value a stage sets
itself always wins over any defaults. A mixture written as a mapping replaces the mixture of lower
layers (a mixture is one unit: keys left over from a base would silently add sources), while a single
weight on the command line (`stages.cpt.mixture.code=0.2`) edits just that weight. Relative paths
(base files, data.corpus / data.build when path-like, recipe: and checkpoint: parents) are taken from
the directory of the file that wrote them, or the working directory for command-line overrides.

After merging, `settle` writes each stage in one spelling (global_batch in sequences, init_from.ref
never null), so everything downstream reads one form."""

import os
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from codemix.config.loading import read_yaml
from codemix.config.recipe_schema import CHECKPOINT_PREFIX, RECIPE_PREFIX, SCRATCH, Recipe
from codemix.errors import ConfigError
from codemix.paths import is_url

BASE_KEY = "base"
DEFAULTS_KEY = "stage_defaults"
COMMAND_LINE = "command line"


class Layer(NamedTuple):
    config: DictConfig
    origin: str
    # False only for a command-line override of one mixture weight (stages.x.mixture.<source>=w).
    replaces_mixtures: bool = True


def file_layers(path: Path, including: tuple[Path, ...]) -> list[Layer]:
    """The layers of one file: its bases' layers (recursively, in order), then its own."""
    if path in including:
        chain = " -> ".join(str(p) for p in including + (path,))
        raise ConfigError(f"{including[-1]}: key '{BASE_KEY}': base files include each other: {chain}")
    config = read_yaml(path)
    bases = config.pop(BASE_KEY, None)
    if isinstance(bases, str):
        bases = [bases]
    if bases is not None and not (isinstance(bases, (ListConfig, list))
                                  and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{path}: key '{BASE_KEY}': expected a list of YAML paths, got {bases!r}")
    layers: list[Layer] = []
    for base in bases or []:
        layers += file_layers((path.parent / base).resolve(), including + (path,))
    _absolutize_paths(config, path.parent)
    return layers + [Layer(config, str(path))]


def override_layers(overrides: list[str]) -> list[Layer]:
    """One layer per `key=value` override, so each can say whether it replaces a mixture."""
    layers = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{COMMAND_LINE}: override '{item}' is not key=value")
        try:
            config = OmegaConf.from_dotlist([item])
        except OmegaConfBaseException as err:
            raise ConfigError(f"{COMMAND_LINE}: override '{item}': {err}") from err
        _absolutize_paths(config, Path.cwd())
        layers.append(Layer(config, COMMAND_LINE, replaces_mixtures=key.strip().endswith("mixture")))
    return layers


def _absolutize_paths(config: DictConfig, directory: Path) -> None:
    """Rewrite the relative paths a layer holds so they no longer depend on where it is merged."""
    data = config.get("data")
    if isinstance(data, DictConfig):
        corpus = data.get("corpus")
        if isinstance(corpus, str) and _looks_like_path(corpus):
            data.corpus = _absolute(corpus, directory)
        if isinstance(data.get("build"), str):
            data.build = _absolute(data.build, directory)
    for stage in _stage_mappings(config) + [config.get(DEFAULTS_KEY)]:
        init_from = stage.get("init_from") if isinstance(stage, DictConfig) else None
        ref = init_from.get("ref") if isinstance(init_from, DictConfig) else None
        if not isinstance(ref, str):
            continue
        for prefix in (RECIPE_PREFIX, CHECKPOINT_PREFIX):
            if ref.startswith(prefix):
                init_from.ref = prefix + _absolute(ref[len(prefix):], directory)


def _looks_like_path(corpus: str) -> bool:
    # The same rule as codemix.data.corpus.resolve_corpus: a bare word is a corpus name.
    if is_url(corpus):  # a remote corpus, never made absolute
        return False
    return Path(corpus).is_absolute() or len(Path(corpus).parts) > 1 or corpus.startswith(".")


def _absolute(path: str, directory: Path) -> str:
    return os.path.normpath(directory / os.path.expanduser(path))


def _stage_mappings(config: DictConfig) -> list[DictConfig]:
    stages = config.get("stages")
    if not isinstance(stages, DictConfig):
        return []
    return [stage for stage in stages.values() if isinstance(stage, DictConfig)]


def expand_stage_defaults(layers: list[Layer]) -> list[Layer]:
    """Turn each layer's stage_defaults into a layer setting every stage, merged before all stage
    layers so a stage's own values win."""
    names: list[str] = []
    for layer in layers:
        stages = layer.config.get("stages")
        if isinstance(stages, DictConfig):
            names += [str(name) for name in stages if name not in names]
    defaults, rest = [], []
    for layer in layers:
        if DEFAULTS_KEY in layer.config:
            partial = layer.config.pop(DEFAULTS_KEY)
            if not isinstance(partial, DictConfig):
                raise ConfigError(f"{layer.origin}: key '{DEFAULTS_KEY}': expected a mapping of "
                                  f"stage fields, got {partial!r}")
            expanded = OmegaConf.create({"stages": {name: partial for name in names}})
            defaults.append(layer._replace(config=expanded, origin=f"{layer.origin} ({DEFAULTS_KEY})"))
        rest.append(layer)
    return defaults + rest


def replace_mixtures(layers: list[Layer]) -> list[Layer]:
    """Drop a stage's mixture from every lower layer when a higher layer writes that mixture whole."""
    for index, layer in enumerate(layers):
        if not layer.replaces_mixtures:
            continue
        stages = layer.config.get("stages")
        if not isinstance(stages, DictConfig):
            continue
        for name, stage in stages.items():
            if not (isinstance(stage, DictConfig) and "mixture" in stage):
                continue
            for lower in layers[:index]:
                lower_stage = OmegaConf.select(lower.config, "stages", default=None)
                lower_stage = lower_stage.get(name) if isinstance(lower_stage, DictConfig) else None
                if isinstance(lower_stage, DictConfig) and "mixture" in lower_stage:
                    del lower_stage["mixture"]
    return layers


def settle(recipe: Recipe, origin_of) -> None:
    """global_batch_tokens -> global_batch (sequences); a null init_from.ref -> scratch (the validator
    then refuses it after the first stage). `origin_of(key)` names the layer that set a key."""
    for name, stage in recipe.stages.items():
        key = ("stages", str(name))
        if (stage.global_batch is None) == (stage.global_batch_tokens is None):
            raise ConfigError(f"{origin_of(key + ('global_batch',))}: key '{'.'.join(key + ('global_batch',))}': "
                              f"{stage.global_batch!r} set exactly one of global_batch (sequences) and "
                              f"global_batch_tokens, got global_batch={stage.global_batch}, "
                              f"global_batch_tokens={stage.global_batch_tokens}")
        if stage.global_batch_tokens is not None:
            tokens = stage.global_batch_tokens
            if not (tokens > 0 and stage.seq_len > 0 and tokens % stage.seq_len == 0):
                where = key + ("global_batch_tokens",)
                raise ConfigError(f"{origin_of(where)}: key '{'.'.join(where)}': {tokens!r} must be a positive "
                                  f"multiple of seq_len {stage.seq_len}")
            stage.global_batch, stage.global_batch_tokens = tokens // stage.seq_len, None
    first = next(iter(recipe.stages.values()), None)
    if first is not None and first.init_from.ref is None:
        first.init_from.ref = SCRATCH
