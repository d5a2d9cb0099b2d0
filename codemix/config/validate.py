"""Checks a composed recipe before any compute: each failure is a ConfigError naming the key and the
file (the last layer that set it). The validator reads the recipe and never changes it: composition
has settled its spelling (config/compose.py)."""

from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from codemix.config.compose import Layer
from codemix.config.model import ModelConfig
from codemix.config.recipe_schema import (
    ACCELERATORS, CHECKPOINT_PREFIX, PRECISIONS, RECIPE_PREFIX, SCHEDULE_KINDS, SCRATCH, STAGE_PREFIX,
    STRATEGIES, Recipe, StageConfig,
)
from codemix.config.stages import SAFE_NAME, parse_parent_ref, resolve_model
from codemix.config.schedule_steps import decay_steps, warmup_steps
from codemix.errors import ConfigError

Key = tuple[str, ...]



class Validator:
    """Checks a merged recipe; each error names the key and the last layer that set it."""

    def __init__(self, recipe: Recipe, layers: list[Layer], loading: tuple[Path, ...],
                 load_parent: Callable[[Path, tuple[Path, ...]], Recipe]):
        self.recipe = recipe
        self.layers = layers
        self.loading = loading
        self.load_parent = load_parent  # a recipe: parent, loaded (and checked) in turn

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
            return resolve_model(self.recipe, vocab_size=None)
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
        self.check_seed(key, stage.seed)
        for field_name in ("val_interval_tokens", "checkpoint_interval_tokens", "snapshot_interval_tokens", "num_workers"):
            value = getattr(stage, field_name)
            self.require(key + (field_name,), value >= 0, value, "must be >= 0")
        self.require(key + ("val_samples_per_source",), stage.val_samples_per_source > 0,
                     stage.val_samples_per_source, "must be positive")

    def check_seed(self, key: Key, seed: int | list[int]) -> None:
        """One seed, or a list of distinct ones as long as every other stage's (then every stage lists)."""
        key = key + ("seed",)
        seeds = seed if isinstance(seed, list) else [seed]
        self.require(key, all(s >= 0 for s in seeds), seed, "must be >= 0")
        if not isinstance(seed, list):
            listed = [name for name, stage in self.recipe.stages.items() if isinstance(stage.seed, list)]
            self.require(key, not listed, seed, f"is one seed while stages {listed} list seeds: give every stage "
                         "a list of as many (run k of the recipe trains each stage with its k-th seed)")
            return
        self.require(key, len(seeds) > 0 and len(set(seeds)) == len(seeds), seed, "must list distinct seeds")
        lengths = {len(stage.seed) for stage in self.recipe.stages.values() if isinstance(stage.seed, list)}
        self.require(key, lengths == {len(seeds)}, seed,
                     f"lists {len(seeds)} seeds while other stages list {sorted(lengths - {len(seeds)})}: every stage "
                     "lists as many (run k of the recipe trains each stage with its k-th seed)")

    def check_batch(self, key: Key, stage: StageConfig) -> None:
        """Check the global batch (in sequences, settled by composition) splits over the devices and fills the budget."""
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
            other = self.load_parent(parent.path.resolve(), self.loading)
            self.require(key, parent.stage in other.stages, ref,
                         f"names no stage of that recipe ({list(other.stages)})")
        else:
            self.require(key, parent.path.exists(), ref, "names a checkpoint that does not exist")
