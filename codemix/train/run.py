"""Running a recipe: its stages in order, each on a Lightning Trainer, each reused when a stage with
the same identity already completed (in this recipe or any other).

Every rank of a multi-process job runs this same code (Lightning's launcher re-executes the command
for the other local ranks; torchrun and SLURM start them all): they compute the same identities and
see the same files, only global rank 0 writes final weights, metrics and lineage, and all ranks meet
at a barrier before the next stage."""

import contextlib
import dataclasses
import gc
import logging
import os
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from codemix._streaming import claim_shm_namespace
from codemix.config.recipe import load_recipe
from codemix.config.recipe_schema import Recipe, StageConfig
from codemix.config.seeds import seed_runs
from codemix.data.corpus import TOKENIZER_FILE
from codemix.data.datamodule import MixtureDataModule
from codemix.data.mixture import render_share_table, share_table
from codemix.errors import CodemixError
from codemix.leftovers import sweep_leftovers
from codemix.model.checkpoint import save_pretrained
from codemix.model.flops import flops_per_token
from codemix.model.transformer import Decoder
from codemix.plan.memory import check_memory
from codemix.plan.stage import RecipePlan, StagePlan, plan_recipe
from codemix.runs.index import find_completed, link_into_recipe, register_completed
from codemix.runs.layout import Home, StageDir
from codemix.runs.lineage import CorpusLink, Lineage, ParentLink, RecipeLink, cumulative_tokens, write_lineage
from codemix.train.callbacks import ThroughputMonitor, TokenProgressBar, stage_loggers
from codemix.train.checkpoint_io import SyncedCheckpointIO, remove_stale_temporaries
from codemix.train.corpora import prepare_corpora
from codemix.train.module import CodemixLM
from codemix.train.resume import (ResumeAgreement, StepCheckpoint, drop_fallbacks, resume_checkpoint,
                                  save_stage_checkpoint)
from codemix.train.sharded_checkpoint import ShardedStrategy, consolidate, consolidated_path, is_sharded
from codemix.train.snapshots import WeightSnapshots
from codemix.train.stages import Parent, merge_metrics, package_versions, read_metrics, weights_from_checkpoint
from codemix.train.val_bpb import GoldBpbValidation, val_bpb_tasks


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
    def lineage(self) -> Lineage | None:
        return self.dir.lineage()


def train_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), home: Home = None,
                 command: str = "") -> list[StageResult]:
    """Train (or reuse) the recipe's stages in order: its corpora first (built when missing), then one
    plan per stage, then the stages."""
    recipe = load_recipe(path, overrides)
    claim_shm_namespace()  # this job's own shared-memory names, before any rank or loader starts
    corpus_of = prepare_corpora(recipe, home, command, say)
    runs = seed_runs(recipe)  # one run per seed when the stages list seeds
    plans = [plan_recipe(run, corpus_of, home) for run in runs]
    for plan in plans:
        check_memory(plan.recipe, plan.corpus.vocab_size)  # before any stage's compute
        for stage in plan.stages:
            val_bpb_tasks(stage.config, stage.origin, trains_sharded(plan.recipe))
    results = []
    for k, plan in enumerate(plans):
        seeds = f", seed run {k + 1} of {len(plans)}" if len(plans) > 1 else ""
        say(f"recipe {recipe.name} ({recipe.source_path}) on corpus {plan.corpus.name} ({plan.corpus.path}){seeds}")
        results += train_plan(plan, home, command)
    return results


def trains_sharded(recipe: Recipe) -> bool:
    """Whether the recipe's stages train with parameters sharded over the ranks (FSDP2)."""
    return recipe.trainer.strategy == "fsdp2"


def train_plan(plan: RecipePlan, home: Home, command: str, until: str | None = None) -> list[StageResult]:
    """The planned stages up to and including `until` (default: all), parents first."""
    done: dict[str, StageResult] = {}
    for stage in plan.until(until):
        done[stage.name] = run_stage(stage, done, home, command)
    return list(done.values())


def run_stage(plan: StagePlan, done: dict[str, StageResult], home: Home, command: str) -> StageResult:
    """Reuse the completed stage of this identity, else train it from its parent."""
    found = find_completed(plan.identity, home)
    if found is not None:
        if rank_zero_only.rank == 0:
            link_into_recipe(found, plan.run_dir)
        say(f"stage {plan.name} [{plan.identity}]: complete, reusing {found.path}")
        return StageResult(plan.name, plan.identity, found, reused=True)
    StageTraining(plan, resolve_parent(plan, done, home, command), command).run(home)
    return StageResult(plan.name, plan.identity, plan.run_dir, reused=False)


def resolve_parent(plan: StagePlan, done: dict[str, StageResult], home: Home, command: str) -> Optional[Parent]:
    """The trained parent of a stage: an earlier stage, another recipe's stage (trained or reused first)
    or a checkpoint on disk."""
    parent = plan.parent
    if parent is None:
        return None
    if parent.kind == "stage":
        return Parent.of_stage(parent.ref, done[parent.stage].dir)
    if parent.kind == "recipe":
        say(f"stage {plan.name} starts from {parent.ref}: training or reusing that recipe's stages first")
        upstream = train_plan(parent.upstream, home, command, until=parent.stage)
        return Parent.of_stage(parent.ref, upstream[-1].dir)
    return Parent.of_path(parent.ref, parent.checkpoint)


def interval_steps(interval_tokens: int, step_tokens: int) -> int:
    """An interval in tokens as whole optimizer steps (0 = none)."""
    return 0 if interval_tokens <= 0 else max(1, interval_tokens // step_tokens)


class StageTraining:
    """One stage's training: the model (from the parent or fresh), its data, the Trainer, resume from
    the stage's last checkpoint, and the final weights + lineage."""

    def __init__(self, plan: StagePlan, parent: Optional[Parent], command: str) -> None:
        self.plan, self.parent, self.command = plan, parent, command
        self.recipe, self.name, self.identity, self.target = plan.recipe, plan.name, plan.identity, plan.run_dir
        self.stage: StageConfig = plan.config
        self.corpus = plan.corpus

    def run(self, home: Home) -> None:
        stage, target = self.stage, self.target
        target.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.checkpoints)
        sweep_leftovers(target.final)
        resume = self.resume_from(resume_checkpoint(target.last_checkpoint, stage.global_batch,
                                                    decides=rank_zero_only.rank == 0))
        origin = "resuming from " + str(resume) if resume else (f"from {stage.init_from.ref}" if self.parent
                                                               else "from scratch")
        say(f"stage {self.name} [{self.identity}]: {self.plan.tokens:,} tokens ({self.plan.steps} steps of "
            f"{self.plan.batch_tokens:,}) {origin} -> {target.path}")
        pl.seed_everything(stage.seed, workers=True, verbose=False)
        module = self.build_module(fresh=resume is None)
        datamodule = MixtureDataModule(
            self.plan.data, stage.micro_batch, stage.seed, num_workers=stage.num_workers,
            val_samples_per_source=stage.val_samples_per_source, cache=self.plan.cache, origin=self.plan.origin,
        )
        trainer = self.build_trainer(resume)
        attempts = target.record_attempt(str(resume) if resume else None) if trainer.is_global_zero else []
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        if trainer.global_step != self.plan.steps:
            raise CodemixError(f"stage {self.name} stopped at step {trainer.global_step} of {self.plan.steps} "
                               f"(interrupted, or its data ran out); run the same command again to resume")
        # The end state, one gathered file under every strategy: a child may load its optimizer.
        with trainer.strategy.gathered() if isinstance(trainer.strategy, ShardedStrategy) else contextlib.nullcontext():
            save_stage_checkpoint(trainer, target.last_checkpoint)
        if trainer.is_global_zero:
            self.finish(module, datamodule, trainer, attempts, home)
        # Free this stage's StreamingDataset (and its shared memory) on every rank before any rank
        # registers the next stage's: ranks that saw different leftovers would pick different
        # shared-memory prefixes. Then wait for rank 0's final weights and lineage.
        del trainer, datamodule, module
        gc.collect()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def resume_from(self, chosen: Optional[Path]) -> Optional[Path]:
        """The checkpoint to hand Lightning: a sharded one as it is under fsdp2 (which re-shards it over
        this job's ranks), else merged into one file first."""
        if chosen is None or not is_sharded(chosen) or self.sharded:
            return chosen
        say(f"stage {self.name}: merging the sharded checkpoint {chosen} into one file for strategy "
            f"{self.recipe.trainer.strategy}")
        return consolidate(chosen, consolidated_path(chosen))

    @property
    def sharded(self) -> bool:
        return trains_sharded(self.recipe)

    def build_module(self, fresh: bool) -> CodemixLM:
        """The stage's model. A resumed stage takes everything from its checkpoint, so the parent's
        weights and optimizer state are only read when starting afresh."""
        parent, stage = self.parent, self.stage
        take_parent = fresh and parent is not None
        return CodemixLM(
            self.plan.model, stage.optimizer, stage.schedule, self.plan.steps, self.corpus.source_names, stage.seq_len,
            init_weights=parent.weights(self.plan.model) if take_parent else None,
            init_optimizer_state=parent.optimizer_state() if take_parent and stage.init_from.load_optimizer else None,
            activation_checkpointing=self.recipe.trainer.activation_checkpointing,
            compile_blocks=self.recipe.trainer.compile,
            sharded=self.sharded,
            bf16_parameters=self.recipe.trainer.precision.startswith("bf16"),
        )

    def build_trainer(self, resume: Optional[Path]) -> pl.Trainer:
        plan, stage, settings = self.plan, self.stage, self.recipe.trainer
        step_tokens = plan.batch_tokens
        callbacks: list[pl.Callback] = [
            ThroughputMonitor(step_tokens, flops_per_token(plan.model, stage.seq_len)),
            TokenProgressBar(self.name, plan.tokens, step_tokens),
            ResumeAgreement(resume),
        ]
        snapshot_every = interval_steps(stage.snapshot_interval_tokens, step_tokens)
        if snapshot_every:
            callbacks.append(WeightSnapshots(self.target, snapshot_every, step_tokens, plan.model,
                                             self.corpus.path / TOKENIZER_FILE))
        in_loop = val_bpb_tasks(stage, self.plan.origin, self.sharded)
        if in_loop:
            callbacks.append(GoldBpbValidation(in_loop, stage.val_bpb_examples, self.corpus.path / TOKENIZER_FILE,
                                               self.corpus.eos_id))
        checkpoint_every = interval_steps(stage.checkpoint_interval_tokens, step_tokens)
        if checkpoint_every:  # last: the other callbacks' rows of the step reach the logs first
            callbacks.append(StepCheckpoint(self.target.last_checkpoint, checkpoint_every))
        val_every = interval_steps(stage.val_interval_tokens, step_tokens)
        _quiet_lightning()
        return pl.Trainer(
            accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes,
            strategy=self.lightning_strategy(), precision=settings.precision,
            max_epochs=1, max_steps=plan.steps, accumulate_grad_batches=plan.accumulation,
            gradient_clip_val=stage.optimizer.grad_clip, gradient_clip_algorithm="norm",
            # In micro-batches; None = only the end-of-stage validation (CodemixLM asks for it).
            val_check_interval=val_every * plan.accumulation if 0 < val_every < plan.steps else None,
            num_sanity_val_steps=0,
            log_every_n_steps=interval_steps(settings.log_every_n_tokens, step_tokens) or 1,
            callbacks=callbacks, logger=stage_loggers(self.target.path), plugins=[SyncedCheckpointIO()],
            enable_checkpointing=False,  # no ModelCheckpoint of Lightning's: StepCheckpoint
            default_root_dir=self.target.path,
            use_distributed_sampler=False,  # the streaming dataset splits samples over ranks itself
            enable_model_summary=False,
        )

    def lightning_strategy(self) -> Any:
        return ShardedStrategy(self.plan.world_size) if self.sharded else self.recipe.trainer.strategy

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
        write_lineage(target.lineage_path, Lineage(
            recipe=RecipeLink(self.recipe.name, self.recipe.source_path, list(self.recipe.base_chain)),
            stage=self.name,
            identity=self.identity,
            parent=None if self.parent is None else ParentLink(
                self.stage.init_from.ref, self.parent.identity, str(self.parent.path), self.stage.init_from.load_optimizer),
            corpus=CorpusLink(self.corpus.name, str(self.corpus.path), self.corpus.tokenizer_hash),
            model=cfg.to_dict(),
            parameters=model.num_parameters(),
            stage_config=dataclasses.asdict(self.stage),
            trainer={**dataclasses.asdict(self.recipe.trainer), "world_size": trainer.world_size},
            steps=trainer.global_step,
            tokens=sum(tokens.values()),
            tokens_per_source=tokens,
            cumulative_tokens_per_source=cumulative_tokens(parent_lineage, tokens),
            mixture=[dataclasses.asdict(row) for row in rows],
            final_metrics=final_metrics(target),
            attempts=attempts,
            finished_at=finished.isoformat(timespec="seconds"),
            # From the first start, so the time lost to an interruption counts.
            wall_time_s=round((finished - datetime.fromisoformat(attempts[0]["started_at"])).total_seconds(), 1),
            versions=package_versions(),
            command=self.command,
            cwd=os.getcwd(),
        ))
        register_completed(self.identity, target, home)
        drop_fallbacks(target.last_checkpoint)  # only needed while the stage ran
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
