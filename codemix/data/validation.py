"""The validation samples of a corpus source: one reader for training validation and eval's held-out loss,
so both losses are measured on the same samples.

A source contributes a fixed, evenly spaced selection of its val split (not its first N: a split is
written in document order, and its head may be one long file)."""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from codemix.data.corpus import TOKENS_COLUMN, Corpus


def tagged_sample(tokens: np.ndarray, source_id: int) -> dict[str, Any]:
    """A sample as the model reads it: int64 token ids plus the corpus source they came from."""
    return {"input_ids": torch.from_numpy(tokens.astype(np.int64)), "source_id": source_id}


def evenly_spaced(available: int, count: int) -> list[int]:
    """`count` (at most `available`) indices spread over range(available), always including 0."""
    count = min(count, available)
    return [i * available // count for i in range(count)]


class ValidationSamples(Dataset):
    """Up to `count` evenly spaced samples of one source's val split, read in order (no shuffle, no shm)."""

    def __init__(self, split_dir: Path, source_id: int, count: int) -> None:
        from codemix._streaming import streaming  # seconds to import: paid only when validation runs

        self.samples = streaming.LocalDataset(local=str(split_dir))
        self.indices = evenly_spaced(self.samples.size, count)
        self.source_id = source_id

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return tagged_sample(self.samples[self.indices[index]][TOKENS_COLUMN], self.source_id)


def validation_samples(corpus: Corpus, source_name: str, count: int) -> ValidationSamples | None:
    """The source's validation selection, or None when its manifest records no val samples."""
    if count <= 0 or not int(corpus.manifest(source_name).get("splits", {}).get("val", {}).get("samples", 0)):
        return None
    source = corpus.source(source_name)
    return ValidationSamples(corpus.split_dir(source_name, "val"), source.id, count)
