"""A stage's mid-stage checkpoints and which one a re-run resumes from.

Checkpoints are written only at optimizer-step boundaries, so the saved loader position is always
whole steps of samples and no half-accumulated gradient is lost. Lightning's ModelCheckpoint neither
restores its last-saved step nor waits for a boundary: a resumed run rewrote step N after its first
micro-batch, with the loader one micro-batch further on, and the next resume skipped that data.

The checkpoint before the last is kept (previous.ckpt), so a last.ckpt found unreadable is set aside
(renamed, never deleted) and the stage resumes from the one before, or restarts."""

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from codemix.atomic import TMP_MARK
from codemix.errors import CodemixError
from codemix.train.callbacks import is_step_boundary
from codemix.runs.layout import PREVIOUS_CHECKPOINT
from codemix.train.module import CHECKPOINT_KEY



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
        if trainer.is_global_zero and self.last.is_file():
            keep_as_previous(self.last)
        trainer.save_checkpoint(self.last, weights_only=False)
        self.saved_step = step

    def state_dict(self) -> dict[str, Any]:
        return {"saved_step": self.saved_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved_step = int(state_dict["saved_step"])


def keep_as_previous(last: Path) -> None:
    """previous.ckpt becomes the current last.ckpt (a hard link: last.ckpt stays in place until the new
    one is renamed over it, so at no moment is there no last.ckpt)."""
    previous = last.with_name(PREVIOUS_CHECKPOINT)
    linked = previous.with_name(f".{PREVIOUS_CHECKPOINT}{TMP_MARK}{os.getpid()}")
    linked.unlink(missing_ok=True)
    try:
        os.link(last, linked)
        os.replace(linked, previous)
    except OSError:  # a file system without hard links: for a moment only previous.ckpt exists
        os.replace(last, previous)


def resume_checkpoint(last: Path, global_batch: int, decides: bool = True) -> Optional[Path]:
    """The checkpoint a re-run of the stage resumes from: last.ckpt, or previous.ckpt when last.ckpt is
    missing or unusable, or None (start the stage afresh). The deciding rank (rank 0) sets each unusable
    one aside with a one-line message naming it and where it went; the other ranks only look, and
    ResumeAgreement checks they chose alike."""
    for candidate in (last, last.with_name(PREVIOUS_CHECKPOINT)):
        if not candidate.is_file():
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
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
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
