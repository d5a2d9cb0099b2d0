"""Per-device training memory of a Decoder, estimated from its config alone (nothing is allocated).

What is counted, in bytes on one device:
- parameters: fp32 master weights (sharded over the ranks under FSDP), plus the 16-bit copies mixed
  precision makes: autocast's cached casts under DDP; under FSDP the all-gathered 16-bit weights of
  the block being computed and the one prefetched, and of the embedding / head.
- gradients: fp32, sharded under FSDP. optimizer: AdamW's two fp32 moments, sharded under FSDP.
- activations: the tensors one micro-batch keeps for backward. Per token and block: the fp32 residual
  input, the normed input, q, k, v before and after rotary, the attention output and its log-sum-exp,
  and the MLP's gate, up, silu and product (a flash / memory-efficient kernel: no T x T scores). With
  checkpointing a recomputed block keeps only its input, and one block's full set is live while it is
  recomputed.
- loss: the chunked linear cross-entropy's live [chunk, V] block (matmul output, its fp32 copy when
  16-bit, and exp) and the per-token log-sum-exp; the full-logits path would keep [B, T, V] logits,
  their fp32 upcast when 16-bit, softmax, and the logits' gradient (12 bytes an entry in bf16 or fp32).
  Checked against measured peaks on the CPU by benchmarks/memory_estimate.py.
- overhead: 1 GiB for the CUDA context and kernels' workspaces, plus 10% of the rest for allocator
  fragmentation. An estimate to decide before compute whether a stage can fit, not a measurement."""

from dataclasses import dataclass

from codemix.config.model import ModelConfig
from codemix.model.loss import chunk_tokens_for
from codemix.model.sizes import layer_matmul_parameters, parameter_count

GIB = 1024**3
SHARDED_STRATEGIES = ("fsdp2",)
_FP32 = 4


@dataclass(frozen=True)
class TrainingShape:
    """How one stage runs on each device."""

    seq_len: int
    micro_batch: int
    precision: str  # a Lightning precision string: 32-true, bf16-mixed, 16-mixed, bf16-true
    strategy: str
    world_size: int
    activation_checkpointing: int = 0  # 0 = none, n = every n-th block recomputed


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    gradients: int
    optimizer: int
    activations: int
    loss: int

    @property
    def overhead(self) -> int:
        return GIB + (self.parameters + self.gradients + self.optimizer + self.activations + self.loss) // 10

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations + self.loss + self.overhead

    def gib(self) -> dict[str, float]:
        parts = ("parameters", "gradients", "optimizer", "activations", "loss", "overhead", "total")
        return {name: round(getattr(self, name) / GIB, 2) for name in parts}


def _activation_bytes(precision: str) -> int:
    return _FP32 if precision.startswith("32") else 2


def block_activation_bytes_per_token(cfg: ModelConfig, act: int) -> int:
    q, kv = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    kept = cfg.d_model + 2 * q + 3 * kv + q + 4 * cfg.ffn_dim  # normed x, q/k/v, roped q/k, attn out, MLP
    if cfg.block == "sequential":
        kept += 2 * cfg.d_model  # the second norm's input and output
    return _FP32 * cfg.d_model + act * kept + _FP32 * cfg.n_heads  # residual input, ..., log-sum-exp


def estimate_memory(cfg: ModelConfig, shape: TrainingShape, fused_loss: bool = True) -> MemoryEstimate:
    params = parameter_count(cfg)
    act = _activation_bytes(shape.precision)
    sharded = shape.strategy in SHARDED_STRATEGIES
    shards = shape.world_size if sharded else 1
    mixed = act == 2 and shape.precision.endswith("mixed")
    master = _FP32 * params // shards
    if sharded:
        gathered_blocks = 2 * layer_matmul_parameters(cfg) * act
        gathered_embedding = cfg.vocab_size * cfg.d_model * act
        copies = gathered_blocks + gathered_embedding
    else:
        copies = act * params if mixed else 0

    tokens = shape.seq_len * shape.micro_batch
    per_block = block_activation_bytes_per_token(cfg, act) * tokens
    every = shape.activation_checkpointing
    recomputed = 0 if every == 0 else len(range(0, cfg.n_layers, every))
    kept_blocks = cfg.n_layers - recomputed
    activations = (kept_blocks * per_block + recomputed * _FP32 * cfg.d_model * tokens
                   + (per_block if recomputed else 0)  # the block being recomputed in backward
                   + (_FP32 + act) * cfg.d_model * tokens  # final norm: its input and output
                   + act * cfg.d_model * tokens)  # embedding output
    upcast = _FP32 if act < _FP32 else 0  # the fp32 copy of 16-bit logits (none when they are fp32 already)
    if fused_loss:
        loss = min(chunk_tokens_for(cfg.vocab_size), tokens) * cfg.vocab_size * (act + upcast + _FP32) + _FP32 * tokens
    else:
        loss = tokens * cfg.vocab_size * (2 * act + upcast + _FP32)
    return MemoryEstimate(parameters=master + copies, gradients=_FP32 * params // shards,
                          optimizer=2 * _FP32 * params // shards, activations=activations, loss=loss)
