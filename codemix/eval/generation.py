"""Sampling continuations of prompts: greedy or with temperature, with the decoder's KV cache (or,
for comparison, by re-running the whole sequence each step), cut at stop sequences or eos.

Prompts of any lengths share a batch, left-padded to the longest (the decoder's `left_pad` hides the
padding; rotary attention sees only distances, so a row's greedy completion does not depend on its
batch). Each row keeps its own budget of new tokens and leaves the batch when it is done."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from codemix.model.transformer import Decoder


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()
    temperature: float = 0.0  # 0 = greedy
    samples: int = 1  # completions per prompt
    seed: int = 0
    use_cache: bool = True
    batch_size: int = 16


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the earliest stop sequence, and whether one was found."""
    ends = [text.find(s) for s in stop if s and s in text]
    return (text[: min(ends)], True) if ends else (text, False)


def generate(model: Decoder, tokenizer: Tokenizer, prompts: Sequence[str], cfg: GenerationConfig,
             eos_id: int | None = None) -> list[list[str]]:
    """`cfg.samples` completions for each prompt, in prompt order."""
    # A long prompt keeps its last tokens; it keeps at least half the window even when that leaves
    # fewer than max_new_tokens to generate.
    window = model.cfg.max_seq_len
    room = max(window // 2, window - cfg.max_new_tokens)
    # A prompt starts after eos, as every training document does.
    prefix = [] if eos_id is None else [eos_id]
    encoded = [(prefix + tokenizer.encode(p, add_special_tokens=False).ids)[-room:] for p in prompts]
    # Similar lengths side by side: the least padding.
    rows = [index for index in sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
            for _ in range(cfg.samples)]
    outputs: list[list[str]] = [[] for _ in prompts]
    generator = torch.Generator().manual_seed(cfg.seed)
    for start in range(0, len(rows), cfg.batch_size):
        chunk = rows[start:start + cfg.batch_size]
        prompts_ids = [encoded[i] for i in chunk]
        for index, text in zip(chunk, _continue(model, tokenizer, prompts_ids, cfg, eos_id, generator)):
            outputs[index].append(text)
    return outputs


@torch.inference_mode()
def _continue(model: Decoder, tokenizer: Tokenizer, prompts: list[list[int]], cfg: GenerationConfig,
              eos_id: int | None, generator: torch.Generator) -> list[str]:
    device = next(model.parameters()).device
    window, longest = model.cfg.max_seq_len, max(map(len, prompts))
    # what each row may add: max_new_tokens, or what its own prompt leaves of the window
    budget = [min(cfg.max_new_tokens, window - len(p)) for p in prompts]
    pad = [longest - len(p) for p in prompts]
    sequence = torch.tensor([[0] * n + p for n, p in zip(pad, prompts)], device=device)
    left_pad = torch.tensor(pad, device=device) if any(pad) else None  # an unpadded batch needs no mask
    cache = model.new_cache(len(prompts), longest + max(budget), padding=max(pad)) if cfg.use_cache else None
    logits = model(sequence, cache=cache, left_pad=left_pad)[:, -1]
    new_tokens: list[list[int]] = [[] for _ in prompts]
    active = list(range(len(prompts)))  # the rows still in the batch, in batch order
    while True:
        token = _pick(logits.float(), cfg.temperature, generator)
        kept = []
        for position, row in enumerate(active):
            if token[position] == eos_id:
                continue
            new_tokens[row].append(int(token[position]))
            if cfg.stop and cut_at_stop(tokenizer.decode(new_tokens[row]), cfg.stop)[1]:
                continue
            if len(new_tokens[row]) < budget[row]:
                kept.append(position)
        if not kept:
            break
        if len(kept) < len(active):  # finished rows leave: the others' spans stay within the window
            keep = torch.tensor(kept, device=device)
            token, active = token[keep.cpu()], [active[i] for i in kept]
            left_pad = None if left_pad is None else left_pad[keep]
            if cache is not None:
                cache.keep_rows(keep)
            else:
                sequence = sequence[keep]
        chosen = token.to(device)[:, None]
        if cache is not None:
            logits = model(chosen, cache=cache, left_pad=left_pad)[:, -1]
        else:
            sequence = torch.cat([sequence, chosen], dim=1)
            logits = model(sequence, left_pad=left_pad)[:, -1]
    return [cut_at_stop(tokenizer.decode(tokens), cfg.stop)[0] for tokens in new_tokens]


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1).cpu()
    probs = torch.softmax(logits / temperature, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
