"""Sampling continuations of prompts: greedy or with temperature, with the decoder's KV cache (or,
for comparison, by re-running the whole sequence each step), cut at stop sequences or eos.

Prompts of equal token length share a batch, so no padding and no attention mask are needed."""

from collections import defaultdict
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
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, ids in enumerate(encoded):
        by_length[len(ids)].extend([index] * cfg.samples)
    outputs: list[list[str]] = [[] for _ in prompts]
    generator = torch.Generator().manual_seed(cfg.seed)
    for length in sorted(by_length):
        rows = by_length[length]
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start:start + cfg.batch_size]
            ids = torch.tensor([encoded[i] for i in chunk])
            steps = min(cfg.max_new_tokens, window - length)
            for index, text in zip(chunk, _continue(model, tokenizer, ids, cfg, steps, eos_id, generator)):
                outputs[index].append(text)
    return outputs


@torch.inference_mode()
def _continue(model: Decoder, tokenizer: Tokenizer, ids: torch.Tensor, cfg: GenerationConfig, steps: int,
              eos_id: int | None, generator: torch.Generator) -> list[str]:
    device = next(model.parameters()).device
    batch = ids.shape[0]
    sequence = ids.to(device)
    cache = model.new_cache(batch, ids.shape[1] + steps) if cfg.use_cache else None
    logits = model(sequence, cache=cache)[:, -1]
    new_tokens: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(steps):
        token = _pick(logits.float(), cfg.temperature, generator)
        for row in range(batch):
            if done[row]:
                continue
            if token[row] == eos_id:
                done[row] = True
                continue
            new_tokens[row].append(int(token[row]))
            if cfg.stop:
                done[row] = cut_at_stop(tokenizer.decode(new_tokens[row]), cfg.stop)[1]
        if all(done) or step == steps - 1:
            break
        chosen = token.to(device)[:, None]
        if cache is not None:
            logits = model(chosen, cache=cache)[:, -1]
        else:
            sequence = torch.cat([sequence, chosen], dim=1)
            logits = model(sequence)[:, -1]
    return [cut_at_stop(tokenizer.decode(tokens), cfg.stop)[0] for tokens in new_tokens]


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1).cpu()
    probs = torch.softmax(logits / temperature, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
