"""Named model sizes, as data: `preset(name, **overrides) -> ModelConfig`.

| preset   | block      | norm      | d_model | layers | heads (kv) | head_dim | ffn  | vocab   | max_seq | parameters    | without embedding |
|----------|------------|-----------|---------|--------|------------|----------|------|---------|---------|---------------|-------------------|
| tiny     | parallel   | layernorm | 128     | 4      | 4 (4)      | 32       | 512  | 8,192   | 512     | 2,097,792     | 1,049,216         |
| tiny-seq | sequential | rmsnorm   | 128     | 4      | 4 (2)      | 32       | 512  | 8,192   | 512     | 2,032,768     | 984,192           |
| small    | parallel   | layernorm | 384     | 6      | 6 (6)      | 64       | 1024 | 8,192   | 1024    | 13,765,248    | 10,619,520        |
| 470m     | parallel   | layernorm | 1024    | 16     | 8 (8)      | 128      | 2816 | 256,000 | 8192    | 467,682,304   | 205,538,304       |
| 2.8b     | parallel   | layernorm | 2560    | 27     | 20 (20)    | 128      | 6912 | 256,000 | 8192    | 2,796,492,800 | 2,141,132,800     |

Every preset: SwiGLU, no biases, rotary positions (theta 10,000), tied embeddings, init std 0.02.
Counts are what `codemix.model.sizes.parameter_count` computes (tests check them against this table
and against allocated / meta-device models).

The study (docs/STUDY.md) states only: parallel attention + MLP blocks, SwiGLU, no biases,
a 256,000-token BPE vocabulary, ~470M and ~2.8B parameters. Widths and depths follow its reading
of Cohere's public design (LayerNorm without bias, rotary, tied embeddings): 1024 x 16 and
2560 x 27. Heads are 128 wide (the widest flash-attention tile on H100s); attention is plain
multi-head (the study says nothing of grouped-query attention); ffn is the 8/3 * d_model rule
rounded up to a multiple of 256. max_seq 8192 is the study's training sequence length.

The tiny presets are for CPU tests and the quickstart (vocab 8,192 = the quickstart tokenizer; a
recipe overrides vocab_size with its corpus's). "tiny-seq" is the Llama-style variant (sequential
blocks, RMSNorm, grouped-query attention)."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from codemix.errors import ConfigError
from codemix.config.model import ModelConfig

_STUDY = dict(vocab_size=256000, max_seq_len=8192, block="parallel", norm="layernorm")
_CPU = dict(vocab_size=8192, block="parallel", norm="layernorm")

PRESETS: Mapping[str, dict[str, Any]] = MappingProxyType({
    "tiny": _CPU | dict(d_model=128, n_layers=4, n_heads=4, max_seq_len=512),
    "tiny-seq": _CPU | dict(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, block="sequential",
                            norm="rmsnorm", max_seq_len=512),
    "small": _CPU | dict(d_model=384, n_layers=6, n_heads=6, max_seq_len=1024),
    "470m": _STUDY | dict(d_model=1024, n_layers=16, n_heads=8),
    "2.8b": _STUDY | dict(d_model=2560, n_layers=27, n_heads=20),
})


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The named preset with any ModelConfig fields replaced; an unknown name or key is a ConfigError."""
    if name not in PRESETS:
        raise ConfigError(f"model preset {name!r} is not one of {sorted(PRESETS)}")
    return ModelConfig.from_dict(PRESETS[name] | overrides, origin=f"model preset {name!r} with overrides")
