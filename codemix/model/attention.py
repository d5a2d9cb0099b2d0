"""Causal (grouped-query) attention behind one interface, with interchangeable backends.

Layout everywhere: q [B, Tq, Hq, D], k and v [B, Tk, Hkv, D] with Tk >= Tq and Hkv dividing Hq.
The queries are the LAST Tq positions of the Tk keys (Tk > Tq when a KV cache holds earlier
positions), so query i may see keys 0 .. i + (Tk - Tq). Query head h reads kv head h // (Hq // Hkv).
This [B, T, H, D] layout is what the projections produce by a view and what flash-attn takes as is.

Backends:
- "flash_attn": flash_attn.flash_attn_func (CUDA, fp16/bf16); its causal mask is bottom-right
  aligned, which is exactly the cache offset.
- "sdpa": torch.nn.functional.scaled_dot_product_attention (flash/cuDNN/efficient kernels on CUDA,
  math on CPU). Its is_causal mask is top-left aligned, so with an offset we pass an explicit mask.
- "reference": plain matmul + mask + softmax in fp32, the yardstick for the tests.
- "auto": flash_attn on CUDA in fp16/bf16 when importable, else sdpa.

A batch of left-padded rows (generation of prompts of different lengths) passes `key_mask` [B, Tk],
True on real keys: sdpa and reference then hide the pad keys, and flash_attn_func, which takes no
mask, hands such a batch to sdpa. A pad query still sees itself, so no softmax row is empty (and no
NaN reaches the real rows through the values).
"""

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from codemix.errors import ConfigError


@functools.cache
def _flash_attn_func() -> Callable | None:
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        return None
    return flash_attn_func


def flash_attn_available() -> bool:
    return _flash_attn_func() is not None


def resolve_backend(backend: str, q: torch.Tensor) -> str:
    """The concrete backend for `backend` on q's device and dtype; a clear error if flash_attn can't run."""
    half = q.dtype in (torch.float16, torch.bfloat16)
    if backend == "auto":
        return "flash_attn" if q.is_cuda and half and flash_attn_available() else "sdpa"
    if backend == "flash_attn":
        if not flash_attn_available():
            raise ConfigError("attention='flash_attn' but the flash-attn package is not importable "
                              "(install codemix[gpu]); use attention='auto' or 'sdpa'")
        if not (q.is_cuda and half):
            raise ConfigError(f"attention='flash_attn' needs CUDA fp16/bf16 tensors, got "
                              f"{q.device.type} {q.dtype}; use attention='auto' or 'sdpa'")
        return backend
    if backend not in _BACKENDS:
        raise ConfigError(f"attention={backend!r} is not one of {sorted(_BACKENDS) + ['auto']}")
    return backend


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto",
              key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention; returns [B, Tq, Hq, D] in q's dtype."""
    backend = resolve_backend(backend, q)
    if key_mask is None:
        return _BACKENDS[backend](q, k, v)
    return (_reference if backend == "reference" else _sdpa)(q, k, v, padded_mask(q.shape[1], key_mask))


def causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Bool [q_len, k_len], True where query i may attend key j: j <= i + (k_len - q_len)."""
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(diagonal=k_len - q_len)


def padded_mask(q_len: int, key_mask: torch.Tensor) -> torch.Tensor:
    """Bool [B, 1, q_len, k_len]: the causal mask, less the pad keys, plus each query's own key."""
    k_len = key_mask.shape[1]
    causal = causal_mask(q_len, k_len, key_mask.device)
    own = torch.zeros(q_len, k_len, dtype=torch.bool, device=key_mask.device)
    own[torch.arange(q_len), torch.arange(k_len - q_len, k_len)] = True
    return ((causal & key_mask[:, None, :]) | own)[:, None]


def _flash_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _flash_attn_func()(q, k, v, causal=True)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    q_len, k_len = q.shape[1], k.shape[1]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # SDPA wants [B, H, T, D]; views, no copies
    gqa = q.shape[1] != k.shape[1]
    if mask is not None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    elif q_len == k_len:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    elif q_len == 1:  # one new query sees every cached key: no mask at all
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    else:
        mask = causal_mask(q_len, k_len, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    return out.transpose(1, 2)


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    group = q.shape[2] // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    mask = causal_mask(q.shape[1], k.shape[1], q.device) if mask is None else mask
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v.float())
    return out.to(q.dtype)


_BACKENDS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "flash_attn": _flash_attn,
    "sdpa": _sdpa,
    "reference": _reference,
}
