"""The decoder: token embedding -> n_layers blocks -> final norm -> LM head. No biases anywhere.

Shapes: B batch, T new tokens, d d_model, Hq/Hkv query/kv heads, D head_dim, F ffn hidden, V vocab."""

import math
import zlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from codemix.model.attention import attention
from codemix.config.model import ModelConfig
from codemix.model.kv_cache import KVCache
from codemix.model.rotary import apply_rotary, rotary_angles


class _GainNorm(nn.Module):
    """A normalisation with a learned per-channel gain and no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))


class LayerNorm(_GainNorm):
    """LayerNorm without bias (as in the study's Cohere-style models)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


class RMSNorm(_GainNorm):
    """RMSNorm, computed in fp32 (as Llama does) and returned in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def make_norm(cfg: ModelConfig) -> nn.Module:
    return (LayerNorm if cfg.norm == "layernorm" else RMSNorm)(cfg.d_model, cfg.norm_eps)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.backend = cfg.attention
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None, layer: int, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, d = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.kv_heads, self.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # now [B, cached + T, Hkv, D]
        out = attention(q, k, v, self.backend, key_mask)  # [B, T, Hq, D]
        return self.wo(out.reshape(B, T, d))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Parallel: x + attn(n(x)) + mlp(n(x)). Sequential: h = x + attn(n1(x)); h + mlp(n2(h))."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.parallel = cfg.block == "parallel"
        self.attn_norm = make_norm(cfg)
        self.mlp_norm = None if self.parallel else make_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.attn_norm(x)
        if self.parallel:
            return x + self.attn(h, cos, sin, cache, self.layer, key_mask) + self.mlp(h)
        x = x + self.attn(h, cos, sin, cache, self.layer, key_mask)
        return x + self.mlp(self.mlp_norm(x))


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.norm = make_norm(cfg)
        # Tied: the head IS the embedding matrix, so there is one tensor (and one safetensors entry).
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.checkpoint_every = 0
        self.reset_parameters()

    def set_activation_checkpointing(self, every: int) -> None:
        """Recompute the activations of every `every`-th block in backward instead of keeping them
        (0 = keep all, 1 = every block). A training-time memory trade: the mathematics is unchanged."""
        if every < 0:
            raise ValueError(f"activation checkpointing interval must be >= 0, got {every}")
        self.checkpoint_every = every

    def _recomputed(self, layer: int) -> bool:
        return (self.checkpoint_every > 0 and layer % self.checkpoint_every == 0
                and self.training and torch.is_grad_enabled())

    @property
    def output_weight(self) -> torch.Tensor:
        """[V, d] matrix of the LM head (the embedding when tied), for callers that chunk the loss."""
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    def reset_parameters(self, seed: int | None = None) -> None:
        """Normal(0, init_std) everywhere; output projections of each residual branch (attention wo,
        MLP down) scaled by 1/sqrt(2 * n_layers) so the residual stream's variance does not grow with
        depth (GPT-2). Norm weights start at one. seed: default torch.initial_seed() (the run's seed)."""
        seed = torch.initial_seed() if seed is None else seed
        for name, param in self.named_parameters():
            self.init_parameter(name, param, seed)

    def init_parameter(self, name: str, tensor: torch.Tensor, seed: int) -> None:
        """Initialise `tensor` (the parameter called `name`, or a full-size CPU stand-in for a sharded
        one) in place. Each parameter draws from its own generator, seeded by the run's seed and its
        name, so the weights do not depend on the order or the device parameters are made in."""
        std = self.cfg.init_std
        generator = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
        with torch.no_grad():
            if name.endswith("norm.weight"):
                nn.init.ones_(tensor)
            elif name.endswith(("attn.wo.weight", "mlp.down.weight")):
                nn.init.normal_(tensor, std=std / math.sqrt(2 * self.cfg.n_layers), generator=generator)
            else:
                nn.init.normal_(tensor, std=std, generator=generator)

    def new_cache(self, batch_size: int, max_len: int, padding: int = 0) -> KVCache:
        """A cache of max_len positions, of which up to `padding` lead every row as left padding."""
        if max_len - padding > self.cfg.max_seq_len:
            raise ValueError(f"cache max_len {max_len} (padding {padding}) > model max_seq_len {self.cfg.max_seq_len}")
        return KVCache(self.cfg.n_layers, batch_size, max_len)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None,
                return_hidden: bool = False, left_pad: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] -> logits [B, T, V] (or the final-normed hidden states [B, T, d] when
        return_hidden). With a cache, positions continue after what it holds and it is extended.
        left_pad [B]: how many leading positions of each row (cached ones included) are padding;
        attention skips them. Rotary attention depends only on distances, so a row's outputs do not
        depend on how far it is shifted right."""
        B, T = input_ids.shape
        start = cache.length if cache is not None else 0
        span = start + T - (int(left_pad.min()) if left_pad is not None else 0)  # the longest row's
        if span > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {span} positions > max_seq_len {self.cfg.max_seq_len}")
        cos, sin = rotary_angles(self.cfg.head_dim, self.cfg.rope_theta, start, T, input_ids.device)
        key_mask = None
        if left_pad is not None:
            key_mask = torch.arange(start + T, device=input_ids.device)[None] >= left_pad.to(input_ids.device)[:, None]
        x = self.embed(input_ids)
        for layer, block in enumerate(self.blocks):
            if self._recomputed(layer) and cache is None:
                x = checkpoint(block, x, cos, sin, None, key_mask, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache, key_mask)
        if cache is not None:
            cache.advance(T)
        hidden = self.norm(x)
        return hidden if return_hidden else F.linear(hidden, self.output_weight)

    def num_parameters(self, include_embedding: bool = True) -> int:
        """Parameters actually allocated (a tied head counted once)."""
        total = sum(p.numel() for p in self.parameters())
        return total if include_embedding else total - self.embed.weight.numel()
