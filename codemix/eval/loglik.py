"""Log-likelihood of continuations given contexts, batched longest-first so padding stays small.

Only the continuation positions go through the LM head and the softmax: on a big vocabulary that is
most of the cost of a full forward, and none of it is needed for the other positions."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from codemix.model.transformer import Decoder


@dataclass(frozen=True)
class Scored:
    logprob: float  # sum over the continuation's tokens
    tokens: int
    greedy: bool  # every continuation token was the model's argmax


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str, start_id: int, max_len: int
                ) -> tuple[list[int], int]:
    """Token ids of start + context + continuation (left-truncated to max_len + 1) and the
    continuation length. `start_id` (eos) begins the context as it begins every training document;
    the parts are encoded separately so the continuation's tokens never depend on the context."""
    context_ids = [start_id, *tokenizer.encode(context, add_special_tokens=False).ids]
    continuation_ids = tokenizer.encode(continuation, add_special_tokens=False).ids
    ids = (context_ids + continuation_ids)[-(max_len + 1):]
    return ids, min(len(continuation_ids), len(ids) - 1)


@torch.inference_mode()
def score(model: Decoder, sequences: Sequence[tuple[list[int], int]], batch_size: int = 16) -> list[Scored]:
    """Score each (ids, n) pair: the log-probability of its last n tokens given the ones before."""
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    results: list[Scored | None] = [None] * len(sequences)
    for start in range(0, len(order), batch_size):
        batch = [order[i] for i in range(start, min(start + batch_size, len(order)))]
        width = len(sequences[batch[0]][0]) - 1
        inputs = torch.zeros(len(batch), width, dtype=torch.long)
        rows, cols, targets = [], [], []
        for row, index in enumerate(batch):
            ids, n = sequences[index]
            inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
            first = len(ids) - 1 - n
            rows += [row] * n
            cols += range(first, first + n)
            targets += ids[-n:] if n else []
        hidden = model(inputs.to(device), return_hidden=True)
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
        logits = F.linear(picked, model.output_weight).float()
        target_logit = logits.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
        # log p = logit - logsumexp: no [tokens, vocab] log-softmax tensor is written
        token_lp = (target_logit - torch.logsumexp(logits, dim=-1)).cpu()
        hits = (target_logit >= logits.amax(dim=-1)).cpu()
        offset = 0
        for row, index in enumerate(batch):
            n = sequences[index][1]
            results[index] = Scored(float(token_lp[offset:offset + n].sum()), n, bool(hits[offset:offset + n].all()))
            offset += n
    return results  # type: ignore[return-value]
