"""The decoder model: config, transformer, attention backends, presets, FLOPs, checkpoints (plain torch)."""

from codemix.model.checkpoint import load_pretrained, save_pretrained
from codemix.model.config import ModelConfig
from codemix.model.kv_cache import KVCache
from codemix.model.transformer import Decoder

__all__ = ["Decoder", "KVCache", "ModelConfig", "load_pretrained", "save_pretrained"]
