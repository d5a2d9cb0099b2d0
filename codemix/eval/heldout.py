"""Per-source held-out loss and bits per byte on a corpus's validation shards.

Bits per byte divides the summed negative log-likelihood (in bits) by the UTF-8 bytes the predicted
tokens decode to (special tokens such as eos decode to nothing), so models with different
tokenizers can be compared."""

import json
import math

import numpy as np
import torch
import torch.nn.functional as F

from codemix.data.corpus import TOKENS_COLUMN, Corpus
from codemix.errors import ConfigError
from codemix.eval.runner import Model


def _val_samples(corpus: Corpus, source: str, limit: int) -> list[np.ndarray]:
    """Up to `limit` samples of a source's val split, read straight from its MDS shards."""
    from codemix._streaming import streaming  # seconds to import: only held-out loss pays for it

    folder = corpus.split_dir(source, "val")
    index_path = folder / "index.json"
    if not index_path.is_file():
        return []
    samples: list[np.ndarray] = []
    for shard in json.loads(index_path.read_text())["shards"]:
        reader = streaming.base.format.reader_from_json(str(folder), None, shard)
        for i in range(reader.samples):
            if len(samples) == limit:
                return samples
            samples.append(reader.get_item(i)[TOKENS_COLUMN])
    return samples


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
        samples = [s[:window].astype(np.int64) for s in _val_samples(corpus, source.name, samples_per_source)]
        if not samples:
            continue
        nll, tokens, n_bytes = 0.0, 0, 0
        for start in range(0, len(samples), batch_size):
            batch = torch.from_numpy(np.stack(samples[start:start + batch_size])).to(device)
            logits = decoder(batch[:, :-1]).float()
            nll += F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
            tokens += batch[:, 1:].numel()
            n_bytes += sum(len(model.tokenizer.decode(row[1:].tolist()).encode())
                           for row in batch.cpu())
        out[source.name] = {"kind": source.kind, "samples": len(samples), "tokens": tokens, "bytes": n_bytes,
                            "loss": nll / tokens, "bits_per_byte": nll / math.log(2) / max(1, n_bytes)}
    return out
