"""Rotary position embeddings, rotating INTERLEAVED pairs (x[2i], x[2i+1]).

Interleaved pairs are the original RoPE / Meta-Llama / Cohere convention: a parallel-block model
exports to transformers' Cohere architecture with q/k weights as they are, and to Llama with the
standard row permutation of q and k (the one in transformers' convert_llama_weights_to_hf)."""

import torch


def rotary_angles(head_dim: int, theta: float, start: int, length: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each [length, head_dim // 2] in fp32, for positions start .. start+length-1.

    Computed per call rather than cached in a buffer: it is tiny next to attention, needs no
    re-initialisation after meta-device construction, and never gets cast to bf16 by a precision plugin."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    positions = torch.arange(start, start + length, device=device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by position; cos/sin [T, D/2]. Done in fp32, returned in x's dtype."""
    pairs = x.float().unflatten(-1, (-1, 2))  # [B, T, H, D/2, 2]
    x1, x2 = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
