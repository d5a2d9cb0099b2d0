"""Model FLOPs per token: the one place codemix counts them (throughput, MFU, budgets).

flops_per_token = 6 * matmul parameters + 12 * n_layers * (n_heads * head_dim) * seq_len

- 6 * N: each matmul weight costs 2 FLOPs per token forward (multiply + add) and 4 backward
  (gradient wrt its input and wrt itself). N counts every block matrix AND the LM head (a matmul even
  when tied to the embedding); the embedding lookup is not a matmul and is not counted. Norms, rotary,
  softmax and other elementwise work are left out, as in the PaLM appendix.
- 12 * L * d_attn * T: per layer and token, q.k^T and attention.v are 2 * T * d_attn FLOPs each
  forward, times 3 for forward + backward. The FULL T x T score matrix is counted, with no halving
  for the causal mask (the PaLM convention, which published MFU figures use); a causal kernel such
  as flash-attention skips about half of this work, so it runs fewer hardware FLOPs than counted.
  T is the training sequence length (every token pays the full-length term: an average over
  positions would halve it, the convention does not)."""

from codemix.config.model import ModelConfig
from codemix.model.sizes import matmul_parameters


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training (forward + backward) FLOPs for one token of a sequence of `seq_len` tokens."""
    attention_width = cfg.n_heads * cfg.head_dim
    return float(6 * matmul_parameters(cfg) + 12 * cfg.n_layers * attention_width * seq_len)
