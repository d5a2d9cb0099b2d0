"""A stage's mid-stage checkpoints and which one a re-run resumes from.

Checkpoints are written only at optimizer-step boundaries, so the saved loader position is always
whole steps of samples and no half-accumulated gradient is lost. Lightning's ModelCheckpoint neither
restores its last-saved step nor waits for a boundary: a resumed run rewrote step N after its first
micro-batch, with the loader one micro-batch further on, and the next resume skipped that data.

The checkpoint before the last is kept (previous.ckpt), so a last.ckpt found unreadable is set aside
(renamed, never deleted) and the stage resumes from the one before, or restarts."""

import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from codemix.atomic import TMP_MARK, fsync_dir, fsync_tree
from codemix.errors import CodemixError
from codemix.train.callbacks import is_step_boundary
from codemix.runs.layout import PREVIOUS_CHECKPOINT
from codemix.train.module import CHECKPOINT_KEY
from codemix.train.sharded_checkpoint import consolidated_path, is_sharded, read_meta, sharded_problem


class StepCheckpoint(Callback):
    """Saves the stage's last checkpoint every `every_n_steps` optimizer steps, at the step's
    boundary, keeping the one before it as previous.ckpt."""

    def __init__(self, last: Path, every_n_steps: int) -> None:
        self.last = last
        self.every_n_steps = every_n_steps
        self.saved_step = 0  # a fresh stage has nothing worth saving before its first step

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        # A resumed stage starts from the checkpoint of this step: it is on disk already.
        self.saved_step = max(self.saved_step, trainer.global_step)

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not is_step_boundary(trainer, batch_idx) or step % self.every_n_steps or step == self.saved_step:
            return
        save_stage_checkpoint(trainer, self.last)
        self.saved_step = step

    def state_dict(self) -> dict[str, Any]:
        return {"saved_step": self.saved_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved_step = int(state_dict["saved_step"])


def save_stage_checkpoint(trainer: "pl.Trainer", last: Path) -> None:
    """Write the training state under a temp name beside `last` (a file, or under fsdp2 a folder of
    shards every rank writes into), then rank 0 rotates: last -> previous, new -> last. A kill at any
    moment leaves a whole last or previous checkpoint, which resume_checkpoint picks."""
    # rank 0's name is every rank's (the strategies broadcast the path); TMP_MARK + pid: a dead writer's
    # leftover is swept before the next start of the stage
    fresh = last.with_name(f".{last.name}{TMP_MARK}{os.getpid()}-step{trainer.global_step}")
    trainer.save_checkpoint(fresh, weights_only=False)  # ends at a barrier: every rank's shards are written
    if trainer.is_global_zero:
        rotate(fresh, last)
    trainer.strategy.barrier()


def rotate(fresh: Path, last: Path) -> None:
    if fresh.is_dir():
        fsync_tree(fresh)  # DCP fsyncs its shards; rank 0's meta.pt it does not
    previous = last.with_name(PREVIOUS_CHECKPOINT)
    if last.exists():
        retire(previous)
        os.replace(last, previous)  # for a moment only previous (the newest whole one) exists
    os.replace(fresh, last)
    fsync_dir(last.parent)


def retire(path: Path) -> None:
    """Remove a checkpoint codemix wrote (file or folder): a folder is first renamed to a temp name, so a
    kill during the removal leaves a leftover that is swept, never a half-deleted checkpoint."""
    if path.is_dir():
        doomed = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-old")
        os.replace(path, doomed)
        shutil.rmtree(doomed)
    else:
        path.unlink(missing_ok=True)


def drop_fallbacks(last: Path) -> None:
    """A completed stage keeps only last.ckpt: the one before it and any merged copy of a sharded one go."""
    for path in (last.with_name(PREVIOUS_CHECKPOINT), consolidated_path(last),
                 consolidated_path(last.with_name(PREVIOUS_CHECKPOINT))):
        retire(path)


def resume_checkpoint(last: Path, global_batch: int, decides: bool = True) -> Optional[Path]:
    """The checkpoint a re-run of the stage resumes from: last.ckpt, or previous.ckpt when last.ckpt is
    missing or unusable, or None (start the stage afresh); each may be a file or a sharded folder. The
    deciding rank (rank 0) sets each unusable one aside with a one-line message naming it and where it
    went; the other ranks only look, and ResumeAgreement checks that every rank follows rank 0's choice."""
    for candidate in (last, last.with_name(PREVIOUS_CHECKPOINT)):
        if not candidate.exists():
            continue
        problem = checkpoint_problem(candidate, global_batch)
        if problem is None:
            return candidate
        if not decides:
            continue
        aside = set_aside(candidate)
        print(f"codemix: warning: {candidate} {problem}; set aside as {aside.name}", file=sys.stderr, flush=True)
    return None


def checkpoint_problem(path: Path, global_batch: int) -> Optional[str]:
    """Why the checkpoint cannot be resumed from, or None. Memory-maps the tensors (reads no weights)."""
    if is_sharded(path) and (problem := sharded_problem(path)) is not None:
        return problem
    try:
        checkpoint = read_meta(path) if is_sharded(path) else torch.load(path, map_location="cpu",
                                                                         weights_only=False, mmap=True)
    except Exception as err:  # torch raises several types for a torn or foreign file
        return f"is unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "global_step" not in checkpoint:
        return "is not a codemix training checkpoint"
    samples = loader_samples(checkpoint)
    expected = checkpoint["global_step"] * global_batch
    if samples is not None and samples != expected:
        return (f"holds step {checkpoint['global_step']} with the loader at sample {samples}, not {expected} "
                "(saved inside a gradient accumulation)")
    return None


def loader_samples(checkpoint: dict[str, Any]) -> Optional[int]:
    """Samples the train loader had yielded (all ranks) when the checkpoint was saved, where recorded."""
    for state in checkpoint.values():
        if isinstance(state, dict) and isinstance(state.get("streaming"), dict):
            return int(state["streaming"]["sample_in_epoch"])
    return None


def set_aside(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    aside = path.with_name(f"{path.name}.unusable-{stamp}")
    os.replace(path, aside)
    return aside


class ResumeAgreement(Callback):
    """Rank 0's resume decision is the job's: once the ranks are connected (before any checkpoint is
    read), every rank's choice is compared with rank 0's, and a rank that saw other files (a node
    without the shared file system, a stale cache) stops the job instead of training a different state."""

    def __init__(self, chosen: Path | None) -> None:
        self.chosen = None if chosen is None else str(chosen)

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        decided = trainer.strategy.broadcast(self.chosen, src=0)
        if decided != self.chosen:
            raise CodemixError(f"rank {trainer.global_rank} would resume from {self.chosen or 'the start'} but "
                               f"rank 0 resumes from {decided or 'the start'}: the ranks do not see the same "
                               "files (run directories must be on a file system every node shares)")
