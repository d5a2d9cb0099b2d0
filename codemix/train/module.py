"""CodemixLM: the LightningModule around the plain decoder.

It owns the causal LM loss, AdamW and the stage's LR schedule, and the per-source accounting that
makes text-vs-code visible inside training: every batch carries each sample's source_id, so the loss
and the tokens of each source are summed over an optimizer step (all micro-batches, all ranks) and
logged as train/loss/<source> and train/tokens/<source>. Cumulative tokens per source are part of
the module's checkpoint state, so a resumed stage keeps counting where it stopped."""

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
from torch.optim.lr_scheduler import LambdaLR

from codemix.config.recipe_schema import OptimizerSection, ScheduleSection
from codemix.config.model import ModelConfig
from codemix.model.loss import linear_cross_entropy
from codemix.model.transformer import Decoder
from codemix.train.callbacks import log_step_metrics
from codemix.train.schedules import lr_at

CHECKPOINT_KEY = "codemix"


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on the projection matrices only. Norm gains and embeddings are not
    decayed: decay would pull rarely-seen tokens' rows towards zero between the updates they get (the
    OLMo / Llama practice). A tied LM head is the embedding, so it is not decayed either. Chosen by
    parameter name, not shape: sharding wrappers may present parameters flattened to 1-D."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # yields a shared (tied) parameter once
        (no_decay if _undecayed(name) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _undecayed(name: str) -> bool:
    return name.startswith("embed.") or name.endswith("norm.weight")


def per_sample_loss(model: Decoder, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each sequence: inputs ids[:, :-1] predict ids[:, 1:]. [B]
    The [B, T-1, V] logits are never materialised (codemix.model.loss)."""
    hidden = model(input_ids[:, :-1], return_hidden=True)  # [B, T-1, d]
    targets = input_ids[:, 1:]
    per_token = linear_cross_entropy(hidden.flatten(0, 1), model.output_weight, targets.flatten())
    return per_token.view(targets.shape).mean(dim=1)


class CodemixLM(pl.LightningModule):
    """One stage's training of a Decoder.

    total_steps: optimizer steps in the stage (the LR schedule's length). init_weights: the parent
    stage's weights (None = fresh init from the global seed). init_optimizer_state: the parent's AdamW
    state (moments and step counts) to continue from; this stage's own hyper-parameters are kept.
    activation_checkpointing: recompute every n-th block in backward (0 = none). compile_blocks:
    torch.compile each block. sharded: FSDP2 (the model is built on the meta device and sharded in
    configure_model). bf16_parameters: under FSDP2, compute with bf16 parameter copies."""

    def __init__(self, model_cfg: ModelConfig, optimizer: OptimizerSection, schedule: ScheduleSection,
                 total_steps: int, source_names: Sequence[str], seq_len: int,
                 init_weights: Optional[Mapping[str, torch.Tensor]] = None,
                 init_optimizer_state: Optional[dict[str, Any]] = None, activation_checkpointing: int = 0,
                 compile_blocks: bool = False, sharded: bool = False, bf16_parameters: bool = False) -> None:
        super().__init__()
        self.model_cfg = model_cfg
        self.sharded, self.bf16_parameters = sharded, bf16_parameters
        self._init_seed = torch.initial_seed()  # what a one-process run draws its initial weights from
        with torch.device("meta") if sharded else contextlib.nullcontext():
            self.model = Decoder(model_cfg)  # sharded: materialised shard by shard in configure_model
        self.model.set_activation_checkpointing(activation_checkpointing)
        if compile_blocks:
            for block in self.model.blocks:
                block.compile()  # in place: parameter names, and so checkpoints, stay the same
        self._init_weights = init_weights if sharded else None
        if init_weights is not None and not sharded:
            self.model.load_state_dict(init_weights, strict=True)
        self.optimizer_cfg = optimizer
        self.schedule = schedule
        self.total_steps = total_steps
        self.source_names = list(source_names)
        self.seq_len = seq_len
        self._init_optimizer_state = init_optimizer_state
        n = len(self.source_names)
        self.tokens_seen = torch.zeros(n, dtype=torch.long)  # whole job, this stage
        self._window_loss = torch.zeros(n, dtype=torch.float64)  # this rank, this optimizer step
        self._window_samples = torch.zeros(n, dtype=torch.float64)

    def configure_model(self) -> None:
        """Under ModelParallelStrategy (trainer.strategy fsdp2) Lightning sets the device mesh first."""
        if not self.sharded or self.device_mesh is None or not self.model.embed.weight.is_meta:
            return
        from codemix.train.sharding import shard_decoder

        if self._init_weights is not None and set(self._init_weights) != set(self.model.state_dict()):
            raise ValueError(f"parent weights have keys {sorted(self._init_weights)}, the model "
                             f"{sorted(self.model.state_dict())}")
        shard_decoder(self.model, self.device_mesh["data_parallel"], self.device, self.bf16_parameters,
                      self._init_seed, self._init_weights)
        self._init_weights = None

    # ---- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optimizer_cfg
        optimizer = torch.optim.AdamW(parameter_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                      betas=tuple(cfg.betas), eps=cfg.eps,
                                      fused=self.device.type == "cuda")  # one kernel for all parameters
        if self._init_optimizer_state is not None:
            load_optimizer_moments(self.model, optimizer, self._init_optimizer_state)
        peak = cfg.lr
        schedule = LambdaLR(optimizer, lambda step: lr_at(step, self.total_steps, self.schedule, peak) / peak)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- training -----------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # After any checkpoint restore and the move to the device.
        self.tokens_seen = self.tokens_seen.to(self.device)
        self._window_loss = self._window_loss.to(self.device)
        self._window_samples = self._window_samples.to(self.device)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # The stage loader has a length, so Lightning does not prefetch from it: the loader's saved
        # position is exactly the batches trained on.
        losses = per_sample_loss(self.model, batch["input_ids"])
        source_id = batch["source_id"]
        self._window_loss.index_add_(0, source_id, losses.detach().double())
        self._window_samples.index_add_(0, source_id, torch.ones_like(losses, dtype=torch.float64))
        return losses.mean()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Once per optimizer step, after the last micro-batch's backward and before any checkpoint of
        this step is written: fold the step's per-source sums (all ranks) into the counters and log."""
        window = self.trainer.strategy.reduce(torch.cat([self._window_loss, self._window_samples]),
                                              reduce_op="sum")
        loss_sum, samples = window.split(len(self.source_names))
        self.tokens_seen += samples.round().long() * self.seq_len
        self._window_loss.zero_()
        self._window_samples.zero_()
        loss_sum, samples, tokens = loss_sum.cpu(), samples.cpu(), self.tokens_seen.cpu()
        metrics = {"train/loss": (loss_sum.sum() / samples.sum()).item(), "train/tokens": tokens.sum().item(),
                   "train/lr": optimizer.param_groups[0]["lr"]}
        for i, name in enumerate(self.source_names):
            if samples[i] > 0:
                metrics[f"train/loss/{name}"] = (loss_sum[i] / samples[i]).item()
            metrics[f"train/tokens/{name}"] = tokens[i].item()
        log_step_metrics(self.trainer, metrics, self.global_step)
        self.log_dict(metrics, logger=False, on_step=True, on_epoch=False)  # for the lineage's final metrics
        self.log("loss", metrics["train/loss"], prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.global_step >= self.trainer.max_steps:
            # The stage's last step: stopping here makes Lightning run the end-of-stage validation,
            # which an interval in batches would miss when the budget is not a multiple of it.
            self.trainer.should_stop = True

    def tokens_per_source(self) -> dict[str, int]:
        return {name: int(n) for name, n in zip(self.source_names, self.tokens_seen.tolist())}

    # ---- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Each validation loader holds one source's held-out samples."""
        losses = per_sample_loss(self.model, batch["input_ids"])
        name = self.source_names[int(batch["source_id"][0])]
        self.log(f"val/loss/{name}", losses.mean(), on_step=False, on_epoch=True, batch_size=len(losses),
                 add_dataloader_idx=False, sync_dist=True)

    # ---- checkpoint state ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.save()  # the rows up to this checkpoint reach the disk before it does
        checkpoint[CHECKPOINT_KEY] = {"tokens_per_source": self.tokens_per_source(),
                                      "model_config": self.model_cfg.to_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint[CHECKPOINT_KEY]["tokens_per_source"]
        if list(saved) != self.source_names:
            raise ValueError(f"checkpoint counts tokens for sources {list(saved)}, this stage has {self.source_names}")
        self.tokens_seen = torch.tensor(list(saved.values()), dtype=torch.long)


def load_optimizer_moments(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Continue from a parent's AdamW moments and step counts (a full, position-keyed optimizer state
    as every codemix checkpoint holds) while keeping this stage's hyper-parameters (lr, betas, eps,
    weight decay): only the per-parameter state is taken. Under FSDP2 each rank keeps its shard of
    every moment (torch's set_optimizer_state_dict re-keys by parameter name and slices)."""
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    current_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != current_sizes:
        raise ValueError(f"parent optimizer has parameter groups of sizes {saved_sizes}, this model {current_sizes}")
    name_of = {id(param): name for name, param in model.named_parameters()}
    # Saved ids pair with this optimizer's parameters group by group, as Optimizer.load_state_dict
    # pairs them: a state gathered from FSDP2 numbers parameters in model order, not group order.
    named = {saved_id: name_of[id(param)] for old, new in zip(saved["param_groups"], optimizer.param_groups)
             for saved_id, param in zip(old["params"], new["params"])}
    groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": [name_of[id(p)] for p in group["params"]]}
              for group in optimizer.param_groups]
    state = {named[saved_id]: moments for saved_id, moments in saved["state"].items()}
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups},
                             options=StateDictOptions(full_state_dict=True))
