"""Running a recipe: its stages in order, each on a Lightning Trainer, each reused when a stage with
the same identity already completed (in this recipe or any other).

Every rank of a multi-process job runs this same code (Lightning's launcher re-executes the command
for the other local ranks; torchrun and SLURM start them all): they compute the same identities and
see the same files, only global rank 0 writes final weights, metrics and lineage, and all ranks meet
at a barrier before the next stage."""

import dataclasses
import gc
import logging
import os
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.strategies import ModelParallelStrategy
import torch
from lightning.pytorch.utilities import rank_zero_only

from codemix._streaming import claim_shm_namespace
from codemix.config.recipe import load_recipe, model_config, parent_of, stage_identity, stage_order
from codemix.config.recipe_schema import Recipe, StageConfig
from codemix.data.corpus import CORPUS_FILE, TOKENIZER_FILE, Corpus, resolve_corpus
from codemix.data.datamodule import MixtureDataModule
from codemix.data.mixture import render_share_table, share_table
from codemix.errors import CodemixError
from codemix.leftovers import sweep_leftovers
from codemix.model.checkpoint import save_pretrained
from codemix.model.flops import flops_per_token
from codemix.model.transformer import Decoder
from codemix.plan.memory import check_memory
from codemix.train.callbacks import ThroughputMonitor, TokenProgressBar, stage_loggers
from codemix.train.checkpoint_io import AtomicCheckpointIO, remove_stale_temporaries
from codemix.train.module import CodemixLM
from codemix.train.resume import StepCheckpoint, resume_checkpoint
from codemix.train.stages import (
    Parent, StageDir, cumulative_tokens, find_completed, link_into_recipe, merge_metrics, package_versions,
    read_metrics, register_completed, stage_dir, weights_from_checkpoint, write_lineage,
)

Home = Optional[str | os.PathLike]


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip:")


def _quiet_lightning() -> None:
    """What Lightning says once per Trainer, so once per stage, that is noise in a study of twenty
    stages: a tip to install a cloud logger, and two warnings that do not apply (the streaming dataset
    splits samples over workers itself; the deprecation is inside Lightning). Idempotent."""
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_a_tip)


def say(message: str) -> None:
    """Print once per job (on global rank 0), flushed so it interleaves with Lightning's output."""
    if rank_zero_only.rank == 0:
        print(message, flush=True)


@dataclass(frozen=True)
class StageResult:
    name: str
    identity: str
    dir: StageDir
    reused: bool

    @property
    def lineage(self) -> dict:
        return self.dir.lineage() or {}


def train_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), home: Home = None,
                 command: str = "", until: Optional[str] = None) -> list[StageResult]:
    """Train (or reuse) the recipe's stages in order, up to and including `until` (default: all)."""
    recipe = load_recipe(path, overrides)
    claim_shm_namespace()  # this job's own shared-memory names, before any rank or loader starts
    corpus = open_corpus(recipe, home, command)
    check_memory(recipe, corpus.vocab_size)  # before any stage's compute
    say(f"recipe {recipe.name} ({recipe.source_path}) on corpus {corpus.name} ({corpus.path})")
    results: dict[str, StageResult] = {}
    for name in stage_order(recipe):
        results[name] = run_stage(recipe, name, corpus, results, home, command)
        if name == until:
            break
    return list(results.values())


def open_corpus(recipe: Recipe, home: Home, command: str) -> Corpus:
    """The recipe's corpus; built first from data.build when it is missing."""
    path = resolve_corpus(recipe.data.corpus, home)
    if recipe.data.build is not None and not _corpus_complete(path):
        if rank_zero_only.rank == 0:
            from codemix.config.data_spec import load_data_spec
            from codemix.data.build import build_corpus

            say(f"corpus {path} is missing: building it from {recipe.data.build}")
            build_corpus(load_data_spec(recipe.data.build), path, command=command)
        else:
            _wait_for_corpus(path)  # under torchrun every rank starts here; rank 0 builds
    return Corpus.open(path)


def _corpus_complete(path: Path) -> bool:
    return (path / CORPUS_FILE).is_file()  # written last by the build


def _wait_for_corpus(path: Path, timeout_s: float = 24 * 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while not _corpus_complete(path):
        if time.monotonic() > deadline:
            raise CodemixError(f"gave up waiting for rank 0 to build the corpus at {path}")
        time.sleep(2)


def run_stage(recipe: Recipe, name: str, corpus: Corpus, done: dict[str, StageResult], home: Home,
              command: str) -> StageResult:
    identity = stage_identity(recipe, name, lambda other: open_corpus(other, home, command).tokenizer_hash)
    target = stage_dir(recipe.name, name, identity, home)
    found = find_completed(identity, home)
    if found is not None:
        if rank_zero_only.rank == 0:
            link_into_recipe(found, target)
        say(f"stage {name} [{identity}]: complete, reusing {found.path}")
        return StageResult(name, identity, found, reused=True)
    parent = resolve_parent(recipe, name, done, home, command)
    StageTraining(recipe, name, identity, target, corpus, parent, command).run(home)
    return StageResult(name, identity, target, reused=False)


def resolve_parent(recipe: Recipe, name: str, done: dict[str, StageResult], home: Home,
                   command: str) -> Optional[Parent]:
    ref = recipe.stages[name].init_from.ref
    parent = parent_of(recipe, name)
    if parent.kind == "stage":
        return Parent.of_stage(ref, done[parent.stage].dir)
    if parent.kind == "recipe":
        say(f"stage {name} starts from {ref}: training or reusing that recipe's stages first")
        upstream = train_recipe(parent.path, home=home, command=command, until=parent.stage)
        return Parent.of_stage(ref, upstream[-1].dir)
    if parent.kind == "checkpoint":
        return Parent.of_path(ref, parent.path)
    return None


def interval_steps(interval_tokens: int, step_tokens: int) -> int:
    """An interval in tokens as whole optimizer steps (0 = none)."""
    return 0 if interval_tokens <= 0 else max(1, interval_tokens // step_tokens)


class StageTraining:
    """One stage's training: the model (from the parent or fresh), its data, the Trainer, resume from
    the stage's last checkpoint, and the final weights + lineage."""

    def __init__(self, recipe: Recipe, name: str, identity: str, target: StageDir, corpus: Corpus,
                 parent: Optional[Parent], command: str) -> None:
        self.recipe, self.name, self.identity, self.target = recipe, name, identity, target
        self.stage: StageConfig = recipe.stages[name]
        self.corpus, self.parent, self.command = corpus, parent, command
        self.model_cfg = model_config(recipe, corpus.vocab_size)
        trainer = recipe.trainer
        self.world_size = trainer.devices * trainer.num_nodes
        self.accumulation = self.stage.global_batch // (self.stage.micro_batch * self.world_size)

    def run(self, home: Home) -> None:
        stage, target = self.stage, self.target
        target.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.checkpoints)
        sweep_leftovers(target.final)
        resume = resume_checkpoint(target.last_checkpoint, stage.global_batch)
        origin = "resuming from " + str(resume) if resume else (f"from {stage.init_from.ref}" if self.parent
                                                               else "from scratch")
        say(f"stage {self.name} [{self.identity}]: {stage.tokens:,} tokens ({stage.steps} steps of "
            f"{stage.batch_tokens:,}) {origin} -> {target.path}")
        pl.seed_everything(stage.seed, workers=True, verbose=False)
        module = self.build_module(fresh=resume is None)
        datamodule = MixtureDataModule(
            self.corpus.path, stage.mixture, stage.tokens, stage.seq_len, stage.global_batch, stage.micro_batch,
            stage.seed, max_passes=stage.max_passes, num_workers=stage.num_workers,
            val_samples_per_source=stage.val_samples_per_source, tokenizer_hash=self.corpus.tokenizer_hash, origin=f"{self.recipe.source_path}: stages.{self.name}",
        )
        trainer = self.build_trainer()
        attempts = target.record_attempt(str(resume) if resume else None) if trainer.is_global_zero else []
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        if trainer.global_step != stage.steps:
            raise CodemixError(f"stage {self.name} stopped at step {trainer.global_step} of {stage.steps} "
                               f"(interrupted, or its data ran out); run the same command again to resume")
        trainer.save_checkpoint(target.last_checkpoint, weights_only=False)  # the end state: a child may load its optimizer
        if trainer.is_global_zero:
            self.finish(module, datamodule, trainer, attempts, home)
        # Free this stage's StreamingDataset (and its shared memory) on every rank before any rank
        # registers the next stage's: ranks that saw different leftovers would pick different
        # shared-memory prefixes. Then wait for rank 0's final weights and lineage.
        del trainer, datamodule, module
        gc.collect()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def build_module(self, fresh: bool) -> CodemixLM:
        """The stage's model. A resumed stage takes everything from its checkpoint, so the parent's
        weights and optimizer state are only read when starting afresh."""
        parent, stage = self.parent, self.stage
        take_parent = fresh and parent is not None
        return CodemixLM(
            self.model_cfg, stage.optimizer, stage.schedule, stage.steps, self.corpus.source_names, stage.seq_len,
            init_weights=parent.weights(self.model_cfg) if take_parent else None,
            init_optimizer_state=parent.optimizer_state() if take_parent and stage.init_from.load_optimizer else None,
            activation_checkpointing=self.recipe.trainer.activation_checkpointing,
            compile_blocks=self.recipe.trainer.compile,
            sharded=self.recipe.trainer.strategy == "fsdp2",
            bf16_parameters=self.recipe.trainer.precision.startswith("bf16"),
        )

    def build_trainer(self) -> pl.Trainer:
        stage, settings = self.stage, self.recipe.trainer
        step_tokens = stage.batch_tokens
        callbacks: list[pl.Callback] = [
            ThroughputMonitor(step_tokens, flops_per_token(self.model_cfg, stage.seq_len)),
            TokenProgressBar(self.name, stage.tokens, step_tokens),
        ]
        checkpoint_every = interval_steps(stage.checkpoint_interval_tokens, step_tokens)
        if checkpoint_every:  # last: the other callbacks' rows of the step reach the logs first
            callbacks.append(StepCheckpoint(self.target.last_checkpoint, checkpoint_every))
        val_every = interval_steps(stage.val_interval_tokens, step_tokens)
        _quiet_lightning()
        return pl.Trainer(
            accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes,
            strategy=self.lightning_strategy(), precision=settings.precision,
            max_epochs=1, max_steps=stage.steps, accumulate_grad_batches=self.accumulation,
            gradient_clip_val=stage.optimizer.grad_clip, gradient_clip_algorithm="norm",
            # In micro-batches; None = only the end-of-stage validation (CodemixLM asks for it).
            val_check_interval=val_every * self.accumulation if 0 < val_every < stage.steps else None,
            num_sanity_val_steps=0,
            log_every_n_steps=interval_steps(settings.log_every_n_tokens, step_tokens) or 1,
            callbacks=callbacks, logger=stage_loggers(self.target.path), plugins=[AtomicCheckpointIO()],
            enable_checkpointing=False,  # no ModelCheckpoint of Lightning's: StepCheckpoint
            default_root_dir=self.target.path,
            use_distributed_sampler=False,  # the streaming dataset splits samples over ranks itself
            enable_model_summary=False,
        )

    def lightning_strategy(self) -> Any:
        if self.recipe.trainer.strategy == "fsdp2":
            # Data parallel over every rank, no tensor parallelism; checkpoints gathered into one file
            # on rank 0 (the stage's last.ckpt, read like every other strategy's).
            return ModelParallelStrategy(data_parallel_size=self.world_size, tensor_parallel_size=1,
                                         save_distributed_checkpoint=False)
        return self.recipe.trainer.strategy

    def finish(self, module: CodemixLM, datamodule: MixtureDataModule, trainer: pl.Trainer,
               attempts: list[dict], home: Home) -> None:
        """Rank 0: final weights, merged metrics, lineage (last), then the cache index."""
        target = self.target
        # From the checkpoint just written, the one copy of the full weights under every strategy.
        cfg, weights = weights_from_checkpoint(target.last_checkpoint)
        model = Decoder(cfg)
        model.load_state_dict(weights)
        save_pretrained(model, cfg, self.corpus.path / TOKENIZER_FILE, target.final)
        merge_metrics(target)
        tokens = module.tokens_per_source()
        rows = share_table(datamodule.plan, [tokens[s] for s in self.corpus.source_names])
        parent_lineage = self.parent.lineage if self.parent else None
        finished = datetime.now(timezone.utc)
        write_lineage(target, {
            "recipe": {"name": self.recipe.name, "path": self.recipe.source_path,
                       "base_chain": self.recipe.base_chain},
            "stage": self.name,
            "identity": self.identity,
            "parent": None if self.parent is None else {
                "ref": self.stage.init_from.ref, "identity": self.parent.identity, "path": str(self.parent.path),
                "load_optimizer": self.stage.init_from.load_optimizer},
            "corpus": {"name": self.corpus.name, "path": str(self.corpus.path),
                       "tokenizer_hash": self.corpus.tokenizer_hash},
            "model": cfg.to_dict(),
            "parameters": model.num_parameters(),
            "stage_config": dataclasses.asdict(self.stage),
            "trainer": {**dataclasses.asdict(self.recipe.trainer), "world_size": trainer.world_size},
            "steps": trainer.global_step,
            "tokens": sum(tokens.values()),
            "tokens_per_source": tokens,
            "cumulative_tokens_per_source": cumulative_tokens(parent_lineage, tokens),
            "mixture": [dataclasses.asdict(row) for row in rows],
            "final_metrics": final_metrics(target),
            "attempts": attempts,
            "finished_at": finished.isoformat(timespec="seconds"),
            # From the first start, so the time lost to an interruption counts.
            "wall_time_s": round((finished - datetime.fromisoformat(attempts[0]["started_at"])).total_seconds(), 1),
            "versions": package_versions(),
            "command": self.command,
            "cwd": os.getcwd(),
        })
        register_completed(self.identity, target, home)
        target.previous_checkpoint.unlink(missing_ok=True)  # only a fallback while the stage ran
        say(render_share_table(rows))
        say(f"stage {self.name}: done. final weights {target.final}, metrics {target.metrics}, "
            f"checkpoint {target.last_checkpoint}, lineage {target.lineage_path}")


def final_metrics(target: StageDir) -> dict[str, float]:
    """The last value of each training-loss and validation column of the stage's merged metrics: from
    the files, so a stage resumed from its end-of-stage checkpoint (that trains no step) has them too."""
    last: dict[str, float] = {}
    for row in read_metrics(target.metrics):
        last.update({key: float(value) for key, value in row.items()
                     if value != "" and key.startswith(("val/", "train/loss"))})
    return dict(sorted(last.items()))
