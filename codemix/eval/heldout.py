"""Per-source held-out loss and bits per byte on a corpus's validation shards.

The samples are the ones training validation scores (codemix.data.validation), so the two losses
can be compared. Bits per byte divides the summed negative log-likelihood (in bits) by the UTF-8 bytes
the predicted tokens decode to (special tokens such as eos decode to nothing), so models with different
tokenizers can be compared."""

import math

import torch
import torch.nn.functional as F

from codemix.data.corpus import Corpus
from codemix.data.validation import validation_samples
from codemix.errors import ConfigError
from codemix.eval.runner import Model


@torch.inference_mode()
def heldout_loss(model: Model, corpus: Corpus, tokenizer_hash: str, samples_per_source: int = 64,
                 batch_size: int = 8) -> dict[str, dict]:
    if tokenizer_hash != corpus.tokenizer_hash:
        raise ConfigError(f"{corpus.path}: corpus tokenizer {corpus.tokenizer_hash} differs from the "
                          f"checkpoint's {tokenizer_hash}; held-out loss needs the same tokenizer")
    decoder = model.decoder
    device = next(decoder.parameters()).device
    window = decoder.cfg.max_seq_len + 1
    out = {}
    for source in corpus.sources:
        selection = validation_samples(corpus, source.name, samples_per_source)
        if selection is None:
            continue
        samples = [selection[i]["input_ids"][:window] for i in range(len(selection))]
        nll, tokens, n_bytes = 0.0, 0, 0
        for start in range(0, len(samples), batch_size):
            batch = torch.stack(samples[start:start + batch_size]).to(device)
            logits = decoder(batch[:, :-1]).float()
            nll += F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
            tokens += batch[:, 1:].numel()
            n_bytes += sum(len(model.tokenizer.decode(row[1:].tolist()).encode())
                           for row in batch.cpu())
        out[source.name] = {"kind": source.kind, "samples": len(samples), "tokens": tokens, "bytes": n_bytes,
                            "loss": nll / tokens, "bits_per_byte": nll / math.log(2) / max(1, n_bytes)}
    return out
