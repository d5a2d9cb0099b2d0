"""Parameter counts from a ModelConfig alone, without allocating a model (470m / 2.8b presets)."""

from codemix.config.model import ModelConfig


def layer_matmul_parameters(cfg: ModelConfig) -> int:
    """Weights of one block's matmuls: q, k, v, o projections and the three SwiGLU matrices."""
    attention = cfg.d_model * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.kv_heads)
    return attention + 3 * cfg.d_model * cfg.ffn_dim


def matmul_parameters(cfg: ModelConfig) -> int:
    """Every weight that multiplies an activation once per token: all blocks plus the LM head
    (the head is a matmul even when its matrix is the tied embedding; the lookup is not)."""
    return cfg.n_layers * layer_matmul_parameters(cfg) + cfg.vocab_size * cfg.d_model


def parameter_count(cfg: ModelConfig, include_embedding: bool = True) -> int:
    """What Decoder(cfg).num_parameters(include_embedding) returns: a tied head is counted once."""
    norms_per_block = 1 if cfg.block == "parallel" else 2
    norms = cfg.d_model * (cfg.n_layers * norms_per_block + 1)
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model
    embedding = cfg.vocab_size * cfg.d_model if include_embedding else 0
    return embedding + cfg.n_layers * layer_matmul_parameters(cfg) + norms + head
