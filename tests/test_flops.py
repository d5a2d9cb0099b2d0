"""flops_per_token against torch's own FLOP counter on a real forward + backward.

Accounting: FlopCounterMode counts matmuls (mm/bmm) at 2*M*N*K and, on CUDA, the fused SDPA kernels
at their full T x T cost; it ignores elementwise work, as the formula does. A forward + backward
of B sequences of T tokens then costs exactly B * T * flops_per_token(cfg, T) when the attention
scores are computed as matmuls (the "reference" backend on CPU, SDPA on CUDA): the match is exact,
checked with a relative tolerance of 1e-9. (On CPU torch's fused SDPA kernel is not counted at all,
so the CPU test uses the reference backend.)"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from codemix.config.model import ModelConfig
from codemix.model.flops import flops_per_token
from codemix.config.presets import preset
from codemix.model.transformer import Decoder

CONFIGS = {
    "parallel-tied-mha": dict(),
    "sequential-untied-gqa": dict(block="sequential", norm="rmsnorm", tie_embeddings=False, n_kv_heads=2),
}


def counted_flops(cfg: ModelConfig, batch: int, seq_len: int, device: str = "cpu") -> int:
    torch.manual_seed(0)
    model = Decoder(cfg).to(device)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq_len), device=device)
    with FlopCounterMode(display=False) as counter:
        model(tokens).float().pow(2).mean().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("name", CONFIGS)
def test_formula_equals_flop_counter_on_cpu(name):
    cfg = ModelConfig(vocab_size=211, d_model=64, n_layers=3, n_heads=4, max_seq_len=64,
                      attention="reference", **CONFIGS[name])
    batch, seq_len = 2, 24
    assert counted_flops(cfg, batch, seq_len) == pytest.approx(batch * seq_len * flops_per_token(cfg, seq_len),
                                                               rel=1e-9)


def test_470m_at_8192():
    # 6 * 467,664,896 matmul weights + 12 * 16 * 1024 * 8192 for attention
    assert flops_per_token(preset("470m"), 8192) == 6 * 467_664_896 + 12 * 16 * 1024 * 8192


@pytest.mark.gpu
def test_formula_equals_flop_counter_with_cuda_sdpa():
    cfg = ModelConfig(vocab_size=211, d_model=256, n_layers=2, n_heads=2, max_seq_len=256, attention="sdpa")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        flops = counted_flops(cfg, 2, 128, device="cuda")
    assert flops == pytest.approx(2 * 128 * flops_per_token(cfg, 128), rel=1e-9)
