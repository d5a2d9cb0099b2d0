"""Each stage's per-device memory estimate, and the refusal of a stage that cannot fit its device.

The device's memory is `trainer.device_memory_gb` when the recipe sets it, else what CUDA reports for
device 0; on a machine without CUDA and without that setting nothing is checked (CPU memory is the
operating system's to manage)."""

from dataclasses import dataclass

import torch

from codemix.config.recipe_schema import Recipe
from codemix.config.stages import model_config, stage_order
from codemix.errors import ConfigError
from codemix.model.memory import GIB, MemoryEstimate, TrainingShape, estimate_memory

# The devices the paper recipes are sized for: 80 GB (A100 / H100) and 141 GB (H200).
REFERENCE_DEVICES_GB = (80.0, 141.0)


@dataclass(frozen=True)
class StageMemory:
    stage: str
    shape: TrainingShape
    estimate: MemoryEstimate


def stage_memory(recipe: Recipe, vocab_size: int | None = None) -> list[StageMemory]:
    """The estimate of every stage on one device, for the recipe's strategy, precision and ranks."""
    cfg = model_config(recipe, vocab_size)
    trainer = recipe.trainer
    rows = []
    for name in stage_order(recipe):
        stage = recipe.stages[name]
        shape = TrainingShape(seq_len=stage.seq_len, micro_batch=stage.micro_batch, precision=trainer.precision,
                              strategy=trainer.strategy, world_size=trainer.devices * trainer.num_nodes,
                              activation_checkpointing=trainer.activation_checkpointing)
        rows.append(StageMemory(name, shape, estimate_memory(cfg, shape)))
    return rows


def device_memory_bytes(recipe: Recipe) -> int | None:
    if recipe.trainer.device_memory_gb is not None:
        return int(recipe.trainer.device_memory_gb * 1e9)
    if recipe.trainer.accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return None


def check_memory(recipe: Recipe, vocab_size: int | None = None) -> None:
    """Refuse, before any compute, the first stage whose estimate exceeds the device's memory."""
    available = device_memory_bytes(recipe)
    if available is None:
        return
    for row in stage_memory(recipe, vocab_size):
        if row.estimate.total > available:
            parts = ", ".join(f"{k} {v}" for k, v in row.estimate.gib().items())
            raise ConfigError(
                f"{recipe.source_path}: stage {row.stage!r} needs about {row.estimate.total / GIB:.1f} GiB a device "
                f"({parts} GiB), the device has {available / GIB:.1f} GiB: lower stage micro_batch "
                f"({row.shape.micro_batch}), set trainer.activation_checkpointing (now "
                f"{row.shape.activation_checkpointing}) or shard with more devices")
