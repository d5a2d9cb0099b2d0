"""The decoder model: config, transformer, attention backends, presets, FLOPs, checkpoints (plain torch)."""

from codemix.model.config import ModelConfig

__all__ = ["ModelConfig"]
