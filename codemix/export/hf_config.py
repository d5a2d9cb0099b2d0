"""Which transformers architecture computes the same function as a codemix decoder, and its config.

Only two layouts map exactly:
- parallel block + LayerNorm (the study's, Cohere style) -> CohereForCausalLM with logit_scale 1 and
  no q/k norm; Cohere also rotates interleaved pairs, so q/k weights go over unchanged;
- sequential block + RMSNorm (Llama style) -> LlamaForCausalLM, q/k rows permuted (see hf_weights).
Any other combination would load into some architecture and silently compute another function, so it
is refused."""

from dataclasses import dataclass

import torch
from transformers import CohereConfig, LlamaConfig, PretrainedConfig

from codemix.errors import ConfigError
from codemix.config.model import ModelConfig


@dataclass(frozen=True)
class Architecture:
    name: str  # transformers' model class
    permute_qk: bool  # rotate-half rotary (Llama) instead of interleaved pairs (codemix, Cohere)


COHERE = Architecture("CohereForCausalLM", permute_qk=False)
LLAMA = Architecture("LlamaForCausalLM", permute_qk=True)
_BY_LAYOUT = {("parallel", "layernorm"): COHERE, ("sequential", "rmsnorm"): LLAMA}


def architecture_for(cfg: ModelConfig, origin: str) -> Architecture:
    try:
        return _BY_LAYOUT[(cfg.block, cfg.norm)]
    except KeyError:
        supported = ", ".join(f"block={b} + norm={n} -> {a.name}" for (b, n), a in _BY_LAYOUT.items())
        raise ConfigError(
            f"{origin}: block={cfg.block!r} with norm={cfg.norm!r} has no transformers architecture that "
            f"computes the same function; refusing to export (supported: {supported})") from None


def hf_config(cfg: ModelConfig, arch: Architecture, dtype: torch.dtype,
              special_ids: dict[str, int]) -> PretrainedConfig:
    """The transformers config of `arch` for `cfg`; special_ids: bos/eos/pad token ids that exist."""
    common = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        initializer_range=cfg.init_std,
        rope_theta=cfg.rope_theta,
        attention_bias=False,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=special_ids.get("bos"),
        eos_token_id=special_ids.get("eos"),
        pad_token_id=special_ids.get("pad"),
        torch_dtype=dtype,
        architectures=[arch.name],
    )
    if arch is COHERE:
        return CohereConfig(**common, layer_norm_eps=cfg.norm_eps, logit_scale=1.0, use_qk_norm=False)
    return LlamaConfig(**common, rms_norm_eps=cfg.norm_eps, mlp_bias=False)
