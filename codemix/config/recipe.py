"""Loading a recipe: composition, up-front validation, and the identity of each stage.

Composition, lowest priority first:
1. `base: [a.yaml, ...]` files (recursively, each with its own bases first), in the order listed;
2. the recipe file itself;
3. command-line `key=value` overrides (`stages.cooldown.tokens=2097152`), in the order given.
`stage_defaults:` in any layer is a partial stage merged under every stage; a value a stage sets
itself always wins over any defaults. A mixture written as a mapping replaces the mixture of lower
layers (a mixture is one unit: keys left over from a base would silently add sources), while a single
weight on the command line (`stages.cpt.mixture.code=0.2`) edits just that weight. Relative paths
(base files, data.corpus / data.build when path-like, recipe: and checkpoint: parents) are taken from
the directory of the file that wrote them, or the working directory for command-line overrides.

Every check runs at load time, before any compute, and a failure is a ConfigError naming the key and
the file (the last layer that set the key) that holds the bad value.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from codemix.config.loading import merge_typed, read_yaml
from codemix.config.recipe_schema import (
    ACCELERATORS, CHECKPOINT_PREFIX, PRECISIONS, RECIPE_PREFIX, SCHEDULE_KINDS, SCRATCH, STAGE_PREFIX,
    STRATEGIES, Recipe, RecipeSchema, StageConfig,
)
from codemix.errors import ConfigError
from codemix.config.model import ModelConfig
from codemix.config.presets import preset
from codemix.config.schedule_steps import decay_steps, warmup_steps

BASE_KEY = "base"
DEFAULTS_KEY = "stage_defaults"
COMMAND_LINE = "command line"
# Recipe and stage names become directory names (runs/<recipe>/<stage>-<identity>/).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
IDENTITY_CHARS = 16

Key = tuple[str, ...]


class Layer(NamedTuple):
    config: DictConfig
    origin: str
    # False only for a command-line override of one mixture weight (stages.x.mixture.<source>=w).
    replaces_mixtures: bool = True


@dataclass(frozen=True)
class ParentRef:
    """A parsed init_from.ref. kind: "scratch" | "stage" | "recipe" | "checkpoint"."""

    kind: str
    stage: str | None = None  # for "stage" and "recipe"
    path: Path | None = None  # for "recipe" and "checkpoint"


# ---------------------------------------------------------------------------------------------------
# Loading


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] | None = None) -> Recipe:
    """Compose, type-check and validate the recipe at `path`; see the module docstring."""
    return _load(Path(path).resolve(), list(overrides or []), loading=())


def stage_order(recipe: Recipe) -> list[str]:
    """Stage names in training order (the order the recipe's layers first name them)."""
    return list(recipe.stages)


def parent_of(recipe: Recipe, stage_name: str) -> ParentRef:
    """Where `stage_name` starts from (the recipe is validated, so the reference is well formed)."""
    return parse_parent_ref(_stage(recipe, stage_name).init_from.ref)


def model_config(recipe: Recipe, vocab_size: int | None = None) -> ModelConfig:
    """The recipe's model: its preset with the `model:` overrides. `vocab_size` (the corpus's, known at
    training time) is used unless the recipe sets model.vocab_size itself."""
    try:
        return _resolve_model(recipe, vocab_size)
    except ConfigError as err:
        raise ConfigError(f"{recipe.source_path}: key 'model': {err}") from err


def _resolve_model(recipe: Recipe, vocab_size: int | None) -> ModelConfig:
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


def _load(path: Path, overrides: list[str], loading: tuple[Path, ...]) -> Recipe:
    if path in loading:
        chain = " -> ".join(str(p) for p in loading + (path,))
        raise ConfigError(f"{path}: recipes start from each other in a cycle: {chain}")
    file_layers = _file_layers(path, including=())
    layers = _replace_mixtures(_expand_stage_defaults(file_layers + _override_layers(overrides)))
    loaded = merge_typed(RecipeSchema, *((layer.config, layer.origin) for layer in layers))
    recipe = Recipe(**{f.name: getattr(loaded, f.name) for f in fields(RecipeSchema)},
                    source_path=str(path), base_chain=[layer.origin for layer in file_layers[:-1]])
    _Validator(recipe, layers, loading + (path,)).run()
    return recipe


def _file_layers(path: Path, including: tuple[Path, ...]) -> list[Layer]:
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
        layers += _file_layers((path.parent / base).resolve(), including + (path,))
    _absolutize_paths(config, path.parent)
    return layers + [Layer(config, str(path))]


def _override_layers(overrides: list[str]) -> list[Layer]:
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
    return Path(corpus).is_absolute() or len(Path(corpus).parts) > 1 or corpus.startswith(".")


def _absolute(path: str, directory: Path) -> str:
    return os.path.normpath(directory / os.path.expanduser(path))


def _stage_mappings(config: DictConfig) -> list[DictConfig]:
    stages = config.get("stages")
    if not isinstance(stages, DictConfig):
        return []
    return [stage for stage in stages.values() if isinstance(stage, DictConfig)]


def _expand_stage_defaults(layers: list[Layer]) -> list[Layer]:
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


def _replace_mixtures(layers: list[Layer]) -> list[Layer]:
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


# ---------------------------------------------------------------------------------------------------
# Validation


class _Validator:
    """Checks a merged recipe; each error names the key and the last layer that set it."""

    def __init__(self, recipe: Recipe, layers: list[Layer], loading: tuple[Path, ...]):
        self.recipe = recipe
        self.layers = layers
        self.loading = loading

    def run(self) -> None:
        recipe = self.recipe
        self.require(("name",), bool(SAFE_NAME.fullmatch(recipe.name)), recipe.name,
                     f"must match {SAFE_NAME.pattern} (it names the run directory)")
        self.check_trainer()
        model = self.check_model()
        if recipe.data.build is not None:
            self.require(("data", "build"), Path(recipe.data.build).is_file(), recipe.data.build,
                         "no such data YAML")
        self.require(("stages",), len(recipe.stages) > 0, {}, "a recipe needs at least one stage")
        for index, (name, stage) in enumerate(recipe.stages.items()):
            self.check_stage(index, str(name), stage, model)

    def fail(self, key: Key, value: object, reason: str) -> None:
        raise ConfigError(f"{self.origin(key)}: key '{'.'.join(key)}': {value!r} {reason}")

    def require(self, key: Key, ok: bool, value: object, reason: str) -> None:
        if not ok:
            self.fail(key, value, reason)

    def origin(self, key: Key) -> str:
        for layer in reversed(self.layers):
            node = layer.config
            for part in key:
                if not (isinstance(node, DictConfig) and part in node):
                    break
                node = node[part]
            else:
                return layer.origin
        return self.recipe.source_path

    def check_trainer(self) -> None:
        trainer = self.recipe.trainer
        self.require(("trainer", "strategy"), trainer.strategy != "fsdp", trainer.strategy,
                     "is refused: Lightning's FSDP1 rejects norm gradient clipping and its flattened parameters "
                     "would turn weight decay off; use fsdp2 (FSDP2 through ModelParallelStrategy) or ddp "
                     "(codemix recipe plan shows what fits)")
        for name, choices in (("accelerator", ACCELERATORS), ("strategy", STRATEGIES),
                              ("precision", PRECISIONS)):
            value = getattr(trainer, name)
            self.require(("trainer", name), value in choices, value, f"must be one of {choices}")
        for name in ("devices", "num_nodes"):
            value = getattr(trainer, name)
            self.require(("trainer", name), value >= 1, value, "must be a count of 1 or more")
        self.require(("trainer", "log_every_n_tokens"), trainer.log_every_n_tokens >= 0,
                     trainer.log_every_n_tokens, "must be >= 0 (0 logs every step)")
        self.require(("trainer", "activation_checkpointing"), trainer.activation_checkpointing >= 0,
                     trainer.activation_checkpointing, "must be >= 0 (0 = none, n = every n-th block)")
        self.require(("trainer", "device_memory_gb"), trainer.device_memory_gb is None or trainer.device_memory_gb > 0,
                     trainer.device_memory_gb, "must be a positive number of GB (or null: ask CUDA)")

    def check_model(self) -> ModelConfig:
        """Resolve the model now (with the preset's vocabulary) so a bad preset or override fails early."""
        try:
            return _resolve_model(self.recipe, vocab_size=None)
        except ConfigError as err:
            raise ConfigError(f"{self.origin(('model',))}: key 'model': {err}") from err

    def check_stage(self, index: int, name: str, stage: StageConfig, model: ModelConfig) -> None:
        key = ("stages", name)
        self.require(key, bool(SAFE_NAME.fullmatch(name)), name,
                     f"is not a usable stage name: must match {SAFE_NAME.pattern}")
        for field_name in ("tokens", "seq_len", "micro_batch"):
            value = getattr(stage, field_name)
            self.require(key + (field_name,), value > 0, value, "must be positive")
        self.require(key + ("seq_len",), stage.seq_len <= model.max_seq_len, stage.seq_len,
                     f"is longer than the model's max_seq_len {model.max_seq_len}")
        self.check_batch(key, stage)
        self.check_mixture(key, stage.mixture)
        self.check_optimizer(key, stage)
        self.check_schedule(key, stage)
        self.check_init_from(index, key, stage)
        self.require(key + ("max_passes",), stage.max_passes > 0, stage.max_passes, "must be positive")
        self.require(key + ("seed",), stage.seed >= 0, stage.seed, "must be >= 0")
        for field_name in ("val_interval_tokens", "checkpoint_interval_tokens", "num_workers"):
            value = getattr(stage, field_name)
            self.require(key + (field_name,), value >= 0, value, "must be >= 0")
        self.require(key + ("val_samples_per_source",), stage.val_samples_per_source > 0,
                     stage.val_samples_per_source, "must be positive")

    def check_batch(self, key: Key, stage: StageConfig) -> None:
        """Settle global_batch in sequences, then check it splits over the devices and fills the budget."""
        both = (stage.global_batch is None) == (stage.global_batch_tokens is None)
        self.require(key + ("global_batch",), not both, stage.global_batch,
                     "set exactly one of global_batch (sequences) and global_batch_tokens, "
                     f"got global_batch={stage.global_batch}, "
                     f"global_batch_tokens={stage.global_batch_tokens}")
        if stage.global_batch_tokens is not None:
            self.require(key + ("global_batch_tokens",),
                         stage.global_batch_tokens > 0 and stage.global_batch_tokens % stage.seq_len == 0,
                         stage.global_batch_tokens, f"must be a positive multiple of seq_len {stage.seq_len}")
            stage.global_batch, stage.global_batch_tokens = stage.global_batch_tokens // stage.seq_len, None
        self.require(key + ("global_batch",), stage.global_batch > 0, stage.global_batch, "must be positive")
        trainer = self.recipe.trainer
        ranks = trainer.devices * trainer.num_nodes
        per_pass = stage.micro_batch * ranks
        if stage.global_batch % per_pass:
            lower = stage.global_batch - stage.global_batch % per_pass
            multiples = ", ".join(str(g) for g in (lower, lower + per_pass) if g > 0)
            micro_batches = [m for m in range(1, stage.global_batch + 1)
                             if stage.global_batch % (m * ranks) == 0]
            other_micro = f" or a micro_batch in {micro_batches}" if micro_batches else ""
            self.fail(key + ("global_batch",), stage.global_batch,
                      f"sequences cannot be split into micro batches of {stage.micro_batch} (set in "
                      f"{self.origin(key + ('micro_batch',))}) on {trainer.devices} device(s) x "
                      f"{trainer.num_nodes} node(s), {per_pass} sequences a pass: use a global_batch that "
                      f"is a multiple of {per_pass} ({multiples}){other_micro}")
        if stage.tokens % stage.batch_tokens:
            lower = stage.tokens - stage.tokens % stage.batch_tokens
            self.fail(key + ("tokens",), stage.tokens,
                      f"is not a multiple of the global batch ({stage.global_batch} sequences x "
                      f"{stage.seq_len} tokens = {stage.batch_tokens}): use "
                      f"{' or '.join(str(t) for t in (lower, lower + stage.batch_tokens) if t > 0)}")

    def check_mixture(self, key: Key, mixture: dict[str, float]) -> None:
        self.require(key + ("mixture",), len(mixture) > 0, mixture, "is empty")
        for source, weight in mixture.items():
            self.require(key + ("mixture", source), weight >= 0, weight, "is negative")
        self.require(key + ("mixture",), sum(mixture.values()) > 0, mixture, "has no positive weight")

    def check_optimizer(self, key: Key, stage: StageConfig) -> None:
        key = key + ("optimizer",)
        optimizer = stage.optimizer
        self.require(key + ("lr",), optimizer.lr > 0, optimizer.lr, "must be positive")
        self.require(key + ("betas",), len(optimizer.betas) == 2 and all(0 <= b < 1 for b in optimizer.betas),
                     optimizer.betas, "must be two values in [0, 1)")
        self.require(key + ("eps",), optimizer.eps > 0, optimizer.eps, "must be positive")
        self.require(key + ("weight_decay",), optimizer.weight_decay >= 0, optimizer.weight_decay,
                     "must be >= 0")
        self.require(key + ("grad_clip",), optimizer.grad_clip is None or optimizer.grad_clip > 0,
                     optimizer.grad_clip, "must be positive (null turns clipping off)")

    def check_schedule(self, key: Key, stage: StageConfig) -> None:
        key = key + ("schedule",)
        schedule = stage.schedule
        self.require(key + ("kind",), schedule.kind in SCHEDULE_KINDS, schedule.kind,
                     f"must be one of {SCHEDULE_KINDS}")
        whole_or_fraction = schedule.warmup < 1 or schedule.warmup.is_integer()
        self.require(key + ("warmup",), schedule.warmup >= 0 and whole_or_fraction,
                     schedule.warmup, "must be a fraction below 1 or a whole number of steps")
        end = {"cosine": "min_lr", "linear": "final_lr", "wsd": "final_lr"}.get(schedule.kind)
        if end is not None:
            end_lr = getattr(schedule, end)
            self.require(key + (end,), 0 <= end_lr <= stage.optimizer.lr, end_lr,
                         f"must be between 0 and the peak lr {stage.optimizer.lr}")
        if schedule.kind == "wsd":
            self.require(key + ("decay_fraction",), 0 < schedule.decay_fraction <= 1,
                         schedule.decay_fraction, "must be in (0, 1]")
        warmup = warmup_steps(schedule, stage.steps)
        decay = decay_steps(schedule, stage.steps)
        if schedule.kind in ("cosine", "linear"):
            self.require(key + ("warmup",), warmup < stage.steps, schedule.warmup,
                         f"gives {warmup} warmup steps: the stage has {stage.steps} steps, so none would be "
                         f"left to decay")
        self.require(key + ("warmup",), warmup + decay <= stage.steps, schedule.warmup,
                     f"gives {warmup} warmup steps, which with {decay} decay steps is longer than the "
                     f"stage's {stage.steps} steps")

    def check_init_from(self, index: int, key: Key, stage: StageConfig) -> None:
        key = key + ("init_from", "ref")
        ref = stage.init_from.ref
        if ref is None and index > 0:
            previous = list(self.recipe.stages)[index - 1]
            self.fail(key, ref, "a stage after the first must say where it starts, e.g. "
                      f"'{STAGE_PREFIX}{previous}', '{SCRATCH}', '{RECIPE_PREFIX}<path>#<stage>' "
                      f"or '{CHECKPOINT_PREFIX}<path>'")
        try:
            parent = parse_parent_ref(ref)
        except ValueError as err:
            raise ConfigError(f"{self.origin(key)}: key '{'.'.join(key)}': {err}") from err
        stage.init_from.ref = ref or SCRATCH
        if parent.kind == SCRATCH:
            self.require(key[:-1] + ("load_optimizer",), not stage.init_from.load_optimizer, True,
                         "needs a parent: a stage from scratch has no optimizer state to load")
        elif parent.kind == "stage":
            names = list(self.recipe.stages)
            self.require(key, parent.stage in names, ref, f"names no stage of this recipe ({names})")
            self.require(key, names.index(parent.stage) < index, ref,
                         "is not an earlier stage: a stage can only start from one trained before it "
                         "(this would be a cycle)")
        elif parent.kind == "recipe":
            self.require(key, parent.path.is_file(), ref, "names a recipe file that does not exist")
            other = _load(parent.path.resolve(), [], self.loading)
            self.require(key, parent.stage in other.stages, ref,
                         f"names no stage of that recipe ({list(other.stages)})")
        else:
            self.require(key, parent.path.exists(), ref, "names a checkpoint that does not exist")


def _stage(recipe: Recipe, stage_name: str) -> StageConfig:
    if stage_name not in recipe.stages:
        raise ConfigError(f"{recipe.source_path}: no stage '{stage_name}' (stages: {stage_order(recipe)})")
    return recipe.stages[stage_name]


# ---------------------------------------------------------------------------------------------------
# Stage identity

# The tokenizer hash of a recipe's corpus: one string for every recipe in a chain, or a function of the
# recipe (needed when a recipe: parent trains on another corpus).
TokenizerHash = str | Callable[[Recipe], str]


def stage_identity(recipe: Recipe, stage_name: str, tokenizer_hash: TokenizerHash) -> str:
    """16 hex characters of sha256 over identity_payload: equal exactly when two stages would train
    the same weights from the same parent, whatever their recipe or stage is called."""
    payload = json.dumps(identity_payload(recipe, stage_name, tokenizer_hash), sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:IDENTITY_CHARS]


def identity_payload(recipe: Recipe, stage_name: str, tokenizer_hash: TokenizerHash) -> dict:
    """The canonical form of everything that changes a stage's weights: the resolved model, the corpus
    and its tokenizer, numerical precision, the stage's budget, data mixture (normalized), batch,
    optimizer, schedule (warmup in steps, only the fields its kind uses), seed, data passes, and the
    parent's identity. Left out as execution details that leave the mathematics unchanged: names,
    descriptions, devices, nodes, strategy, micro batch, workers, logging, validation and checkpoint
    intervals. The corpus enters as written (a name), or as its absolute path when given as a path;
    model.vocab_size as "corpus" unless the recipe sets it (the tokenizer hash fixes it then)."""
    stage = _stage(recipe, stage_name)
    vocab = "corpus" if recipe.model.vocab_size is None else recipe.model.vocab_size
    model = {**model_config(recipe).to_dict(), "vocab_size": vocab}
    return {
        "model": model,
        "corpus": recipe.data.corpus,
        "tokenizer_hash": tokenizer_hash if isinstance(tokenizer_hash, str) else tokenizer_hash(recipe),
        "precision": recipe.trainer.precision,
        "tokens": stage.tokens,
        "mixture": _normalized(stage.mixture),
        "seq_len": stage.seq_len,
        "global_batch": stage.global_batch,
        "optimizer": asdict(stage.optimizer),
        "schedule": _schedule_payload(stage),
        "seed": stage.seed,
        "max_passes": stage.max_passes,
        "parent": _parent_payload(recipe, stage, tokenizer_hash),
    }


def _normalized(mixture: dict[str, float]) -> dict[str, float]:
    """Weights summing to 1, zero weights dropped, rounded so 9:1 and 0.9:0.1 hash alike."""
    total = sum(mixture.values())
    return {source: float(f"{weight / total:.12g}")
            for source, weight in sorted(mixture.items()) if weight > 0}


def _schedule_payload(stage: StageConfig) -> dict:
    schedule = stage.schedule
    payload: dict = {"kind": schedule.kind, "warmup_steps": warmup_steps(schedule, stage.steps)}
    if schedule.kind == "cosine":
        payload["min_lr"] = schedule.min_lr
    if schedule.kind in ("linear", "wsd"):
        payload["final_lr"] = schedule.final_lr
    if schedule.kind == "wsd":
        payload["decay_steps"] = decay_steps(schedule, stage.steps)
    return payload


def _parent_payload(recipe: Recipe, stage: StageConfig, tokenizer_hash: TokenizerHash) -> dict | None:
    parent = parse_parent_ref(stage.init_from.ref)
    if parent.kind == SCRATCH:
        return None
    if parent.kind == "stage":
        identity = stage_identity(recipe, parent.stage, tokenizer_hash)
    elif parent.kind == "recipe":
        identity = stage_identity(load_recipe(parent.path), parent.stage, tokenizer_hash)
    else:
        identity = "sha256:" + _content_sha256(parent.path)
    return {"identity": identity, "load_optimizer": stage.init_from.load_optimizer}


def _content_sha256(path: Path) -> str:
    """A checkpoint's content hash: the file's bytes, or a directory's file names and bytes."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else ''}\0".encode())
        digest.update(_file_sha256(file, stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """Cached on (path, size, mtime) so a multi-GB checkpoint is read once per process."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
