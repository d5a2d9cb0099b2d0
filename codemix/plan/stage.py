"""One plan per stage, worked out once from the recipe and its corpus, before any compute.

Training, the study driver, `codemix eval`'s reuse checks and `codemix recipe show` read these plans;
none of them recomputes a stage fact. Planning opens corpora that exist and never builds one: a
missing corpus is an error naming the command that builds it (training runs that command first)."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codemix.config.model import ModelConfig
from codemix.config.recipe import load_recipe
from codemix.config.recipe_schema import Recipe, StageConfig
from codemix.config.schedule_steps import decay_steps, warmup_steps
from codemix.config.stages import model_config, parent_of, stage_order
from codemix.data.corpus import CORPUS_FILE, Corpus, resolve_corpus
from codemix.data.mixture import DataPlan, plan_data
from codemix.data.remote import StreamCache, stream_cache
from codemix.errors import ConfigError
from codemix.plan.identity import stage_identity
from codemix.runs.layout import Home, StageDir, stage_dir

# The corpus a recipe trains on, opened (never built).
CorpusOf = Callable[[Recipe], Corpus]


def corpus_complete(path: Path) -> bool:
    return (path / CORPUS_FILE).is_file()  # written last by the build


def built_corpus_of(home: Home) -> CorpusOf:
    """Opens a recipe's corpus if it has been built (each corpus once: identities ask for it per stage
    and per parent); a missing one is an error naming the build command."""
    opened: dict[Path, Corpus] = {}

    def open_built(recipe: Recipe) -> Corpus:
        path = resolve_corpus(recipe.data.corpus, home)
        if path not in opened:
            if recipe.data.build is not None and not corpus_complete(path):
                raise ConfigError(f"{recipe.source_path}: key 'data.corpus': {recipe.data.corpus!r} is not built "
                                  f"yet (codemix data build {recipe.data.build} {path})")
            opened[path] = Corpus.open(path)
        return opened[path]

    return open_built


@dataclass(frozen=True)
class ParentPlan:
    """Where a stage starts: an earlier stage of its recipe ("stage"), a stage of another recipe
    ("recipe", planned in `upstream`), or a checkpoint on disk ("checkpoint")."""

    kind: str
    ref: str
    identity: str | None
    load_optimizer: bool
    stage: str | None = None
    upstream: "RecipePlan | None" = None
    checkpoint: Path | None = None


@dataclass(frozen=True)
class StagePlan:
    recipe: Recipe
    name: str
    identity: str
    model: ModelConfig  # resolved with the corpus's vocabulary
    data: DataPlan  # samples per source
    cache: StreamCache  # the local cache of a remote corpus's streams
    world_size: int
    accumulation: int  # micro batches per optimizer step on each rank
    warmup_steps: int
    decay_steps: int
    parent: ParentPlan | None
    run_dir: StageDir

    @property
    def config(self) -> StageConfig:
        return self.recipe.stages[self.name]

    @property
    def corpus(self) -> Corpus:
        return self.data.corpus

    @property
    def steps(self) -> int:
        return self.data.steps

    @property
    def tokens(self) -> int:
        return self.data.tokens

    @property
    def batch_tokens(self) -> int:
        return self.data.global_batch * self.data.seq_len

    @property
    def origin(self) -> str:
        return f"{self.recipe.source_path}: stages.{self.name}"


@dataclass(frozen=True)
class RecipePlan:
    recipe: Recipe
    corpus: Corpus
    stages: tuple[StagePlan, ...]  # in training order

    def stage(self, name: str) -> StagePlan:
        return next(plan for plan in self.stages if plan.name == name)

    def until(self, name: str | None) -> tuple[StagePlan, ...]:
        """The stages up to and including `name` (all when None)."""
        names = [plan.name for plan in self.stages]
        return self.stages if name is None else self.stages[: names.index(name) + 1]


def plan_recipe(recipe: Recipe, corpus_of: CorpusOf, home: Home = None) -> RecipePlan:
    """Every stage of `recipe` planned against its corpus (and recipe: parents against theirs)."""
    corpus = corpus_of(recipe)
    planned: dict[str, StagePlan] = {}
    for name in stage_order(recipe):
        planned[name] = _plan_stage(recipe, name, corpus, planned, corpus_of, home)
    return RecipePlan(recipe, corpus, tuple(planned.values()))


def _plan_stage(recipe: Recipe, name: str, corpus: Corpus, earlier: dict[str, StagePlan], corpus_of: CorpusOf,
                home: Home) -> StagePlan:
    stage = recipe.stages[name]
    origin = f"{recipe.source_path}: stages.{name}"
    trainer = recipe.trainer
    world_size = trainer.devices * trainer.num_nodes
    data = plan_data(corpus, stage.mixture, stage.tokens, stage.seq_len, stage.global_batch, stage.max_passes,
                     origin=origin)
    identity = stage_identity(recipe, name, lambda other: corpus_of(other).tokenizer_hash)
    return StagePlan(
        recipe=recipe, name=name, identity=identity,
        model=model_config(recipe, corpus.vocab_size),
        data=data,
        cache=stream_cache(corpus, [p.source.name for p in data.drawn], recipe.data.cache_limit,
                           recipe.data.predownload, origin),
        world_size=world_size,
        accumulation=stage.global_batch // (stage.micro_batch * world_size),  # divisible: checked at load
        warmup_steps=warmup_steps(stage.schedule, data.steps),
        decay_steps=decay_steps(stage.schedule, data.steps),
        parent=_plan_parent(recipe, name, earlier, corpus_of, home),
        run_dir=stage_dir(recipe.name, name, identity, home),
    )


def _plan_parent(recipe: Recipe, name: str, earlier: dict[str, StagePlan], corpus_of: CorpusOf,
                 home: Home) -> ParentPlan | None:
    init_from = recipe.stages[name].init_from
    parent = parent_of(recipe, name)
    common = {"kind": parent.kind, "ref": init_from.ref, "load_optimizer": init_from.load_optimizer}
    if parent.kind == "stage":
        return ParentPlan(**common, identity=earlier[parent.stage].identity, stage=parent.stage)
    if parent.kind == "recipe":
        upstream = plan_recipe(load_recipe(parent.path), corpus_of, home)
        return ParentPlan(**common, identity=upstream.stage(parent.stage).identity, stage=parent.stage,
                          upstream=upstream)
    if parent.kind == "checkpoint":  # its identity, when it is a stage directory, is in its lineage
        return ParentPlan(**common, identity=None, checkpoint=parent.path)
    return None
