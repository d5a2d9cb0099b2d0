"""Attention backends agree with the plain reference, with and without a KV-cache offset, MHA and GQA."""

import pytest
import torch

from codemix.errors import ConfigError
from codemix.model.attention import attention, causal_mask, flash_attn_available, resolve_backend

# (query heads, kv heads): multi-head and grouped-query.
HEADS = [(4, 4), (6, 2)]
# (new queries, total keys): no cache, a one-token decode step, a chunk after a cached prefix.
LENGTHS = [(17, 17), (1, 17), (5, 17)]


def _qkv(q_len, k_len, hq, hkv, dtype=torch.float32, device="cpu", d=32):
    gen = torch.Generator(device="cpu").manual_seed(q_len * 100 + k_len * 10 + hq + hkv)
    q = torch.randn(2, q_len, hq, d, generator=gen)
    k = torch.randn(2, k_len, hkv, d, generator=gen)
    v = torch.randn(2, k_len, hkv, d, generator=gen)
    return (t.to(device=device, dtype=dtype) for t in (q, k, v))


def test_causal_mask_is_bottom_right_aligned():
    assert causal_mask(2, 4, torch.device("cpu")).tolist() == [[True, True, True, False],
                                                               [True, True, True, True]]


@pytest.mark.parametrize("hq,hkv", HEADS)
@pytest.mark.parametrize("q_len,k_len", LENGTHS)
def test_sdpa_matches_reference_fp32(hq, hkv, q_len, k_len):
    q, k, v = _qkv(q_len, k_len, hq, hkv)
    torch.testing.assert_close(attention(q, k, v, "sdpa"), attention(q, k, v, "reference"),
                               atol=1e-5, rtol=1e-5)


def test_offset_queries_equal_the_tail_of_full_attention():
    # Queries at the end of the keys must see exactly what the same queries see in a full pass.
    q, k, v = _qkv(9, 9, 6, 2)
    full = attention(q, k, v, "reference")
    tail = attention(q[:, -3:], k, v, "reference")
    torch.testing.assert_close(tail, full[:, -3:], atol=1e-6, rtol=1e-6)


def test_gqa_query_heads_share_kv_heads_in_groups():
    # Hq=4, Hkv=2: query heads 0,1 read kv head 0 and heads 2,3 read kv head 1.
    q, k, v = _qkv(5, 5, 4, 2)
    grouped = attention(q, k, v, "reference")
    expanded = attention(q, k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2), "reference")
    torch.testing.assert_close(grouped, expanded)
    head1_alone = attention(q[:, :, 1:2], k[:, :, 0:1], v[:, :, 0:1], "reference")
    torch.testing.assert_close(grouped[:, :, 1:2], head1_alone)


def test_auto_uses_sdpa_on_cpu():
    q, _, _ = _qkv(3, 3, 2, 2)
    assert resolve_backend("auto", q) == "sdpa"


def test_flash_attn_request_that_cannot_run_is_a_clear_error():
    q, k, v = _qkv(3, 3, 2, 2)  # CPU fp32: flash-attn cannot run it, installed or not
    with pytest.raises(ConfigError, match="attention='flash_attn'"):
        attention(q, k, v, "flash_attn")


def test_unknown_backend_is_an_error():
    q, k, v = _qkv(3, 3, 2, 2)
    with pytest.raises(ConfigError, match="'fast'"):
        attention(q, k, v, "fast")


@pytest.mark.gpu
@pytest.mark.parametrize("hq,hkv", HEADS)
@pytest.mark.parametrize("q_len,k_len", LENGTHS + [(256, 256), (64, 256)])
def test_cuda_bf16_backends_match_reference(hq, hkv, q_len, k_len):
    q, k, v = _qkv(q_len, k_len, hq, hkv, dtype=torch.bfloat16, device="cuda", d=128)
    expected = attention(q, k, v, "reference").float()
    backends = ["sdpa", "auto"] + (["flash_attn"] if flash_attn_available() else [])
    for backend in backends:
        out = attention(q, k, v, backend)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2, msg=backend)


@pytest.mark.gpu
def test_cuda_auto_prefers_flash_attn_when_installed():
    q, _, _ = _qkv(4, 4, 2, 2, dtype=torch.bfloat16, device="cuda")
    assert resolve_backend("auto", q) == ("flash_attn" if flash_attn_available() else "sdpa")
