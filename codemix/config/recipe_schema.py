"""The recipe schema: typed dataclasses that a recipe YAML merges onto (OmegaConf structured configs).

A recipe reads top to bottom as one experiment: which model, which corpus, how the trainer runs, then
an ordered mapping of stages (init -> continued pretraining -> cooldown), each with its token budget,
mixture, batch, optimizer, LR schedule and the parent it starts from. A misspelt key or a value of the
wrong type is an error naming the key and the file (codemix.config.loading). Checks that need more
than one field (batch splits, parents, schedules) live in codemix.config.recipe.

Choices among a few names are plain `str` fields checked by codemix.config.recipe, so consumers get
ordinary strings (what Lightning and JSON want) rather than Enum members.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union, get_args, get_origin

from omegaconf import MISSING

from codemix.config.model import ModelConfig

ACCELERATORS = ("auto", "cpu", "gpu")
STRATEGIES = ("auto", "ddp", "fsdp2")
# Lightning's precision names that make sense for training here.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
SCHEDULE_KINDS = ("cosine", "linear", "constant", "wsd")

# init_from.ref forms; see InitFrom.
SCRATCH = "scratch"
STAGE_PREFIX = "stage:"
RECIPE_PREFIX = "recipe:"
CHECKPOINT_PREFIX = "checkpoint:"


def _optional(tp: Any) -> Any:
    """`tp` as Optional[tp] (unchanged when it already admits None)."""
    if get_origin(tp) is Union and type(None) in get_args(tp):
        return tp
    return Optional[tp]


# The recipe's `model:` section: a preset name plus any ModelConfig field as an override; None means
# "the preset's value". Built from ModelConfig's own fields so the two can never drift apart.
# vocab_size is normally left out: training takes it from the corpus's tokenizer (corpus.json
# "vocab_size"), see codemix.config.recipe.model_config. Limitation of None-as-unset: an Optional
# field (n_kv_heads, ffn_hidden) cannot be overridden back to None; spell the value out instead
# (n_kv_heads: <n_heads>).
ModelSection = dataclasses.make_dataclass(
    "ModelSection",
    [("preset", str, "tiny")]
    + [(f.name, _optional(f.type), None) for f in dataclasses.fields(ModelConfig)],
)
ModelSection.__doc__ = "`model:` section: a preset name plus ModelConfig overrides (None = the preset's)."
ModelSection.__module__ = __name__


@dataclass
class DataSection:
    """corpus: a corpus name (under $CODEMIX_HOME/corpora) or a path (contains a '/' or starts with
    '.'; relative paths are taken from the directory of the file that wrote them).
    build: optional data YAML (same path rule) that `codemix train` builds the corpus from when it is
    missing.
    cache_limit, predownload: for a corpus in object storage (s3://...), the local cache of its training
    shards ("50gb", or bytes; default: unbounded if they fit in half the free disk, else half of it) and
    the samples each loader worker downloads ahead (default: streaming's, 8 x micro_batch)."""

    corpus: str = MISSING
    build: Optional[str] = None
    cache_limit: Optional[str] = None
    predownload: Optional[int] = None


@dataclass
class TrainerSection:
    """How the stages run. devices and num_nodes are explicit counts (no "auto") so the batch split can
    be checked before any compute is spent."""

    accelerator: str = "auto"  # auto | cpu | gpu
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp2 (FSDP2: parameters, gradients, AdamW state sharded)
    precision: str = "32-true"  # 32-true on CPU; bf16-mixed on GPU
    log_every_n_tokens: int = 0  # 0 = log every optimizer step
    # Recompute every n-th block's activations in backward (0 = none, 1 = every block): trades about a
    # third more compute for activation memory that no longer grows with depth.
    activation_checkpointing: int = 0
    # The memory a stage's estimate must fit (codemix recipe plan); null = what CUDA reports, none on CPU.
    device_memory_gb: Optional[float] = None
    # torch.compile each block (on GPUs: fused kernels; on CPU it only adds compile time).
    compile: bool = False


@dataclass
class OptimizerSection:
    """AdamW. The study does not state betas, eps, weight decay or clipping: these defaults are the
    common choices for decoders of this size (GPT-3 / OLMo style), documented as ours."""

    lr: float = MISSING  # the peak LR the schedule shapes
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: Optional[float] = 1.0  # max global grad norm; null = no clipping


@dataclass
class ScheduleSection:
    """LR over the stage's optimizer steps (codemix.train.schedules.lr_at has the exact formulas).

    warmup: a value below 1 is a fraction of the stage's steps (0.01 = the first 1%); a value of 1 or
    more is a whole number of steps (the study's pretraining: 1325). Linear from 0 to the peak LR.
    min_lr: where cosine ends. final_lr: where linear and wsd end (1e-6 in the study's cooldown).
    decay_fraction: wsd only, the share of steps (at the end) that decay linearly to final_lr.
    A field the kind does not use is ignored, so a stage can switch kind without unsetting others."""

    kind: str = "cosine"  # cosine | linear | constant | wsd
    warmup: float = 0.0
    min_lr: float = 0.0
    final_lr: float = 0.0
    decay_fraction: float = 0.1


@dataclass
class InitFrom:
    """Where a stage's weights start.

    ref: "scratch" (random init), "stage:<name>" (an earlier stage of this recipe),
    "recipe:<path>#<stage>" (a stage of another recipe, trained or reused through its identity) or
    "checkpoint:<path>" (a weights file or directory). Relative paths are taken from the directory of
    the file that wrote them. null means "not stated": allowed only on the first stage (scratch);
    every later stage must say where it starts, so a branch never silently inherits the stage
    written above it.
    load_optimizer: also restore the parent's optimizer state (weights only by default)."""

    ref: Optional[str] = None
    load_optimizer: bool = False


@dataclass
class StageConfig:
    """One training stage. Exactly one of global_batch (sequences) and global_batch_tokens is given;
    after loading, global_batch always holds the sequence count and global_batch_tokens is None."""

    tokens: int = MISSING  # the stage's token budget: a positive multiple of the global batch tokens
    mixture: dict[str, float] = MISSING  # source or kind name -> weight (normalized by the loader)
    seq_len: int = MISSING
    global_batch: Optional[int] = None
    global_batch_tokens: Optional[int] = None
    micro_batch: int = MISSING  # sequences per device per forward pass
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    init_from: InitFrom = field(default_factory=InitFrom)
    # Initialisation (a stage from scratch) and data order. A list trains the recipe once per seed under
    # `codemix reproduce` (every stage of the recipe then lists as many, distinct seeds; run k takes the
    # k-th of each); `codemix reproduce --seeds N` makes the list [seed, seed+1, ..., seed+N-1].
    seed: Union[int, list[int]] = 0
    max_passes: float = 1.0  # how many times a source may be repeated to fill its share
    val_interval_tokens: int = 0  # 0 = validate only at the end of the stage
    val_samples_per_source: int = 64  # held-out sequences per source in each validation pass
    # In-loop continuous scores: at each validation, the bits per byte of the gold continuation of the
    # first val_bpb_examples examples of each named eval task (0-shot, scored by codemix.eval.bpb as
    # `codemix eval` scores them), logged as val/bpb/<task> and val/bpb/<category>. [] = none.
    val_bpb_tasks: list[str] = field(default_factory=list)
    val_bpb_examples: int = 16
    checkpoint_interval_tokens: int = 0  # 0 = checkpoint only at the end of the stage
    # Weights-only snapshots (snapshots/tokens-N/, a pretrained folder codemix eval reads); 0 = none.
    snapshot_interval_tokens: int = 0
    num_workers: int = 0

    @property
    def batch_tokens(self) -> int:
        return self.global_batch * self.seq_len

    @property
    def steps(self) -> int:
        """Optimizer steps in the stage (tokens is a multiple of batch_tokens once loaded)."""
        return self.tokens // self.batch_tokens


@dataclass
class RecipeSchema:
    """What a recipe YAML may hold. `base:` (files merged first) and `stage_defaults:` (a partial
    stage merged under every stage) are composition keys handled by codemix.config.recipe before
    this schema sees the layers."""

    name: str = MISSING
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    stages: dict[str, StageConfig] = MISSING


@dataclass
class Recipe(RecipeSchema):
    """A loaded, validated recipe. source_path: the recipe file (absolute); base_chain: every base
    file merged under it, recursively, in merge order (absolute paths)."""

    source_path: str = ""
    base_chain: list[str] = field(default_factory=list)
