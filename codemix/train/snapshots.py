"""Weights-only snapshots during a stage.

Snapshots (runs/<recipe>/<stage>-<id>/snapshots/tokens-N/) are pretrained folders like final/, so
`codemix eval` and the notebooks can follow a stage through training; the full training state stays
in checkpoints/last.ckpt. Under FSDP2 the weights are gathered from the shards (a collective every
rank joins) and rank 0 writes them."""

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from codemix.config.model import ModelConfig
from codemix.model.checkpoint import save_weights
from codemix.runs.layout import StageDir
from codemix.train.callbacks import is_step_boundary


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's whole state dict on the CPU, gathered when its parameters are sharded."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class WeightSnapshots(Callback):
    """Every `every_n_steps` optimizer steps, at the step boundary, a snapshot named by the tokens the
    stage has trained; one already on disk (a resumed stage passing the step again) is kept."""

    def __init__(self, stage: StageDir, every_n_steps: int, step_tokens: int, cfg: ModelConfig,
                 tokenizer: Path) -> None:
        self.stage, self.every_n_steps, self.step_tokens = stage, every_n_steps, step_tokens
        self.cfg, self.tokenizer = cfg, tokenizer

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not is_step_boundary(trainer, batch_idx) or step % self.every_n_steps:
            return
        target = self.stage.snapshot(step * self.step_tokens)
        exists = trainer.strategy.broadcast(target.is_dir())  # one answer for all ranks: all gather or none
        if exists:
            return
        weights = full_weights(pl_module.model)
        if trainer.is_global_zero:
            save_weights(weights, self.cfg, self.tokenizer, target)
        trainer.strategy.barrier()
