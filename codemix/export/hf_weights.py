"""codemix state-dict names and layouts -> transformers' (Cohere / Llama decoder naming)."""

import torch

from codemix.export.hf_config import Architecture
from codemix.config.model import ModelConfig

_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp.gate.weight": "mlp.gate_proj.weight",
    "mlp.up.weight": "mlp.up_proj.weight",
    "mlp.down.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
              "lm_head.weight": "lm_head.weight"}


def interleaved_to_half(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder a q or k projection's output rows so rotate-half rotary (pairs i, i + D/2) computes
    what interleaved rotary (pairs 2i, 2i + 1) did: within each head, even rows first, then odd."""
    rows, d_in = weight.shape
    head_dim = rows // heads
    return weight.view(heads, head_dim // 2, 2, d_in).transpose(1, 2).reshape(rows, d_in)


def hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig, arch: Architecture) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        if name in _TOP_NAMES:
            out[_TOP_NAMES[name]] = tensor
            continue
        _, layer, local = name.split(".", 2)  # blocks.{i}.<local>
        if arch.permute_qk and local == "attn.wq.weight":
            tensor = interleaved_to_half(tensor, cfg.n_heads)
        elif arch.permute_qk and local == "attn.wk.weight":
            tensor = interleaved_to_half(tensor, cfg.kv_heads)
        out[f"model.layers.{layer}.{_BLOCK_NAMES[local]}"] = tensor.contiguous()
    return out
