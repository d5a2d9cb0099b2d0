"""In-loop continuous scores: the bits per byte of eval tasks' gold continuations at each validation,
computed by the same function `codemix eval` scores with (codemix.eval.bpb.add_gold_bpb), so a curve
logged during training and an offline evaluation of the same weights give the same numbers."""

from pathlib import Path

import lightning.pytorch as pl
from tokenizers import Tokenizer

from codemix.config.recipe_schema import StageConfig
from codemix.errors import ConfigError
from codemix.eval.aggregate import GROUPS, aggregate
from codemix.eval.bpb import BPB, add_gold_bpb
from codemix.eval.runner import Model
from codemix.eval.tasks.base import TaskSpec, subset
from codemix.eval.tasks.registry import resolve_tasks


def val_bpb_tasks(stage: StageConfig, origin: str, sharded: bool) -> list[TaskSpec]:
    """The stage's in-loop tasks, refused in one line (naming `origin`, the recipe and stage) when one
    is unknown, the example count is not positive or the model is sharded (scoring needs it whole in
    one process); the train command checks every stage before any."""
    if stage.val_bpb_tasks and sharded:
        raise ConfigError(f"{origin}: val_bpb_tasks scores the whole model in one process; with fsdp2 score "
                          "snapshots offline instead (codemix eval STAGE --checkpoints all)")
    if stage.val_bpb_examples < 1:
        raise ConfigError(f"{origin}: val_bpb_examples {stage.val_bpb_examples}: must be at least 1")
    try:
        return resolve_tasks(None, list(stage.val_bpb_tasks)) if stage.val_bpb_tasks else []
    except ConfigError as err:
        raise ConfigError(f"{origin}: val_bpb_tasks: {str(err).removeprefix('--tasks: ')}") from None


class GoldBpbValidation(pl.Callback):
    """Logs val/bpb/<task> and val/bpb/<category> (the mean of its tasks) after each validation."""

    def __init__(self, tasks: list[TaskSpec], examples: int, tokenizer: Path, eos_id: int, batch_size: int = 16):
        # loaded once, before training: a task's data never changes between validations
        self.instances = {spec: subset(spec.load().instances, examples) for spec in tasks}
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.eos_id = eos_id
        self.batch_size = batch_size

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        model = Model(pl_module.model, self.tokenizer, self.eos_id)
        scores: dict[str, tuple[str, float]] = {}
        for spec, instances in self.instances.items():
            metrics: dict = {}
            add_gold_bpb(instances, [{} for _ in instances], metrics, model, self.batch_size)
            pl_module.log(f"val/bpb/{spec.name}", metrics[BPB], on_epoch=True, sync_dist=False)
            scores[spec.name] = (spec.category, metrics[BPB])
        averaged = aggregate(scores)  # the categories as `codemix eval` averages them (aggregate_bpb)
        for group in GROUPS:
            if (score := averaged[group]["score"]) is not None:
                pl_module.log(f"val/bpb/{group}", score, on_epoch=True, sync_dist=False)
