"""ModelConfig: every choice that shapes the decoder, as plain data.

An OmegaConf structured config (only str/int/float/bool/Optional fields), so a recipe's `model:`
section merges onto it and a misspelt key is an error. Choices among a few names are plain `str`
fields checked in `__post_init__` (OmegaConf has no Literal type)."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from codemix.errors import ConfigError

BLOCKS = ("parallel", "sequential")
NORMS = ("layernorm", "rmsnorm")
ATTENTION_BACKENDS = ("auto", "flash_attn", "sdpa", "reference")

# SwiGLU hidden widths are rounded up to this multiple (tensor-core and sharding friendly).
FFN_MULTIPLE = 256


@dataclass
class ModelConfig:
    """Shape of one decoder-only transformer.

    n_kv_heads: None means n_heads (plain multi-head attention); fewer heads gives grouped-query
    attention and must divide n_heads.
    ffn_hidden: None means the SwiGLU rule 8/3 * d_model rounded up to a multiple of 256, which keeps
    the MLP's parameter count (3 matrices) close to a 4*d_model two-matrix MLP.
    block: "parallel" (x + attn(n(x)) + mlp(n(x)), one norm, as in the study / Cohere) or
    "sequential" (Llama style, x + attn(n1(x)), then + mlp(n2(.))).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: Optional[int] = None
    ffn_hidden: Optional[int] = None
    block: str = "parallel"
    norm: str = "layernorm"
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    max_seq_len: int = 2048
    init_std: float = 0.02
    norm_eps: float = 1e-5
    attention: str = "auto"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "must be positive")
        _require(self.block in BLOCKS, "block", self.block, f"must be one of {BLOCKS}")
        _require(self.norm in NORMS, "norm", self.norm, f"must be one of {NORMS}")
        _require(self.attention in ATTENTION_BACKENDS, "attention", self.attention,
                 f"must be one of {ATTENTION_BACKENDS}")
        _require(self.d_model % self.n_heads == 0, "n_heads", self.n_heads,
                 f"must divide d_model={self.d_model}")
        _require(self.head_dim % 2 == 0, "n_heads", self.n_heads,
                 f"gives head_dim={self.head_dim}; rotary positions need an even head_dim")
        _require(self.kv_heads > 0 and self.n_heads % self.kv_heads == 0, "n_kv_heads",
                 self.n_kv_heads, f"must be positive and divide n_heads={self.n_heads}")
        _require(self.ffn_dim > 0, "ffn_hidden", self.ffn_hidden, "must be positive")
        for name in ("rope_theta", "init_std", "norm_eps"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "must be positive")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_dim(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        return FFN_MULTIPLE * math.ceil(8 * self.d_model / 3 / FFN_MULTIPLE)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "model config") -> "ModelConfig":
        """Build from a plain mapping (e.g. model_config.json); unknown keys are an error naming `origin`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown model config keys {unknown}")
        try:
            return cls(**values)
        except TypeError as err:  # a required key is missing
            raise ConfigError(f"{origin}: {err}") from err
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err}") from err


def _require(ok: bool, name: str, value: Any, reason: str) -> None:
    if not ok:
        raise ConfigError(f"model.{name}={value!r} {reason}")
