"""Linear + cross-entropy without the [N, V] logits.

At the study's 256k vocabulary the logits of one 8,192-token sequence are 2 GB in bf16 and 8 GB once
cross-entropy upcasts them; keeping them for backward is what ran the 470m out of memory. Here the
head is applied chunk by chunk over tokens: forward keeps only each token's log-sum-exp, backward
recomputes each chunk's logits and turns them straight into the gradients of the hidden states and of
the head. Peak extra memory is one [chunk, V] fp32 block. On CUDA, liger-kernel's fused Triton kernel
does the same in one pass when it is installed (the `gpu` extra); this torch path is the reference
and the CPU path.

Shapes: N tokens, d model width, V vocabulary."""

import importlib.util

import torch

# Logit entries one chunk may hold: 128M (0.5 GiB in fp32), so 524 tokens at a 256k vocabulary and the
# whole micro-batch at the tiny models' 8k.
CHUNK_LOGITS = 1 << 27


def chunk_tokens_for(vocab_size: int) -> int:
    return max(1, CHUNK_LOGITS // vocab_size)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_tokens: int) -> torch.Tensor:
        losses = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(losses)
        for start in range(0, hidden.shape[0], chunk_tokens):
            rows = slice(start, start + chunk_tokens)
            logits = (hidden[rows] @ weight.T).float()  # [chunk, V]
            lse[rows] = torch.logsumexp(logits, dim=-1)
            losses[rows] = lse[rows] - logits.gather(1, targets[rows, None]).squeeze(1)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk_tokens = chunk_tokens
        return losses

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):
        hidden, weight, targets, lse = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if ctx.needs_input_grad[1] else None
        for start in range(0, hidden.shape[0], ctx.chunk_tokens):
            rows = slice(start, start + ctx.chunk_tokens)
            # d loss / d logits = softmax - one_hot(target), scaled by the incoming gradient.
            grad_logits = torch.exp((hidden[rows] @ weight.T).float() - lse[rows, None])
            grad_logits[torch.arange(grad_logits.shape[0], device=grad_logits.device), targets[rows]] -= 1.0
            grad_logits *= grad_losses[rows, None].float()
            if grad_hidden is not None:
                grad_hidden[rows] = (grad_logits @ weight.float()).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += grad_logits.T @ hidden[rows].float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk_tokens: int | None = None) -> torch.Tensor:
    """Per-token cross-entropy of `hidden @ weight.T` against targets, in fp32. hidden [N, d],
    weight [V, d], targets [N] -> [N]. Equal to F.cross_entropy(reduction="none") on the full logits,
    gradients included. chunk_tokens None: chunk_tokens_for(V)."""
    chunk_tokens = chunk_tokens_for(weight.shape[0]) if chunk_tokens is None else chunk_tokens
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens)


def liger_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_tokens: int | None = None) -> torch.Tensor:
    """Per-token loss [N] by the fastest exact path here: liger's fused kernel for CUDA tensors when
    liger-kernel is installed, else the chunked torch function."""
    if hidden.is_cuda and liger_available():
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        out = liger_fused_linear_cross_entropy(hidden, weight, targets, reduction="none")
        return (out[0] if isinstance(out, tuple) else out).float()  # (loss, z_loss) in some releases
    return chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens)
