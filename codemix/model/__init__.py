"""The decoder model: config, transformer, attention backends, presets, FLOPs, checkpoints (plain torch)."""

from codemix.model.checkpoint import load_pretrained, save_pretrained
from codemix.model.config import ModelConfig
from codemix.model.flops import flops_per_token
from codemix.model.kv_cache import KVCache
from codemix.model.presets import PRESETS, preset
from codemix.model.sizes import parameter_count
from codemix.model.transformer import Decoder

__all__ = ["PRESETS", "Decoder", "KVCache", "ModelConfig", "flops_per_token", "load_pretrained",
           "parameter_count", "preset", "save_pretrained"]
