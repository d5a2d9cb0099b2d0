"""The decoder model as plain torch: transformer, attention backends, loss, FLOPs, checkpoints. Its
config and presets are data and live in codemix.config."""

from codemix.model.checkpoint import load_pretrained, save_pretrained
from codemix.model.flops import flops_per_token
from codemix.model.kv_cache import KVCache
from codemix.model.sizes import parameter_count
from codemix.model.transformer import Decoder

__all__ = ["Decoder", "KVCache", "flops_per_token", "load_pretrained", "parameter_count", "save_pretrained"]
