"""Pack tokenized documents into seq_len samples and write MDS train/val splits (one build task's part).

Each document is followed by eos; the documents of a split are concatenated in read order and cut
into samples of exactly seq_len tokens (the last partial piece is dropped and counted). A document
goes to val iff hash(seed, content) < val_fraction, so the split never depends on the read order or
on the number of tasks. A slice whose hash split leaves val without one whole sample (a source
of a few dozen documents) instead holds out its lowest-hash documents until val has one
(`pack_holding_out`), so every source with enough text has a validation split a reader can open."""

import heapq
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xxhash

from codemix._streaming import MDSWriter
from codemix.data.corpus import SPLITS, TOKENS_COLUMN

SHARD_SIZE_LIMIT = 1 << 26  # bytes per MDS shard file (streaming's default)
_HASH_SPAN = float(1 << 64)


def split_hash(text: str, seed: int) -> int:
    return xxhash.xxh3_64_intdigest(text, seed=seed)


def is_val(text: str, seed: int, val_fraction: float) -> bool:
    """The deterministic validation split by document content."""
    return split_hash(text, seed) / _HASH_SPAN < val_fraction


@dataclass
class SplitCounts:
    documents: int = 0
    samples: int = 0
    tokens: int = 0  # tokens inside written samples (samples * seq_len)
    dropped_tokens: int = 0  # the last partial sample, not written


@dataclass(frozen=True)
class EncodeSettings:
    tokenizer_path: str
    eos_id: int
    dtype: str
    seed: int
    val_fraction: float


@dataclass
class EncodedChunk:
    """One chunk's documents, tokenized and eos-terminated, concatenated per split."""

    tokens: dict[str, np.ndarray]
    documents: dict[str, int]
    train_documents: list[tuple[int, int]]  # (split hash, tokens with eos) of each train document


def split_chunk(ids: Sequence[Sequence[int]], hashes: Sequence[int], settings: EncodeSettings,
                held_out: frozenset[int] = frozenset()) -> EncodedChunk:
    """A chunk of tokenized documents (`ids`, their split hashes in `hashes`) split by content hash,
    eos after each; documents whose split hash is in `held_out` go to val too."""
    split_of = ["val" if h / _HASH_SPAN < settings.val_fraction or h in held_out else "train" for h in hashes]
    tokens, documents = {}, {}
    for split in SPLITS:
        mine = [doc for doc, s in zip(ids, split_of) if s == split]
        tokens[split] = _concat_with_eos(mine, settings.eos_id, settings.dtype)
        documents[split] = len(mine)
    train = [(h, len(doc) + 1) for h, doc, s in zip(hashes, ids, split_of) if s == "train"]
    return EncodedChunk(tokens=tokens, documents=documents, train_documents=train)


def _concat_with_eos(ids: Sequence[Sequence[int]], eos_id: int, dtype: str) -> np.ndarray:
    out = np.empty(sum(len(doc) for doc in ids) + len(ids), dtype=dtype)
    pos = 0
    for doc in ids:
        out[pos : pos + len(doc)] = doc
        pos += len(doc)
        out[pos] = eos_id
        pos += 1
    return out


class SamplePacker:
    """Cuts a stream of token arrays into exactly seq_len-token samples written to an MDS dataset."""

    def __init__(self, out_dir: Path, seq_len: int, dtype: str):
        self.seq_len = seq_len
        self.counts = SplitCounts()
        self._carry = np.empty(0, dtype=dtype)
        self._writer = MDSWriter(
            out=str(out_dir),
            columns={TOKENS_COLUMN: f"ndarray:{dtype}"},
            compression=None,
            size_limit=SHARD_SIZE_LIMIT,
        )

    def add(self, tokens: np.ndarray, documents: int) -> None:
        self.counts.documents += documents
        stream = np.concatenate((self._carry, tokens)) if len(self._carry) else tokens
        full = len(stream) // self.seq_len
        for sample in stream[: full * self.seq_len].reshape(full, self.seq_len):
            self._writer.write({TOKENS_COLUMN: sample})
        self._carry = stream[full * self.seq_len :].copy()
        self.counts.samples += full
        self.counts.tokens += full * self.seq_len

    def finish(self) -> SplitCounts:
        self._writer.finish()
        self.counts.dropped_tokens = len(self._carry)
        return self.counts


def pack_splits(chunks: Iterable[EncodedChunk], out_dir: Path, seq_len: int, dtype: str) -> dict[str, dict]:
    """Pack encoded chunks into out_dir/train and out_dir/val; returns counts per split."""
    packers = {split: SamplePacker(out_dir / split, seq_len, dtype) for split in SPLITS}
    for chunk in chunks:
        for split, packer in packers.items():
            packer.add(chunk.tokens[split], chunk.documents[split])
    return {split: asdict(packer.finish()) for split, packer in packers.items()}


class HoldOutReserve:
    """The train documents with the lowest split hashes whose tokens just fill one sample: what a
    slice moves to val when its hash split left val without a whole sample. Memory: those few."""

    def __init__(self, seq_len: int):
        self.seq_len = seq_len
        self._heap: list[tuple[int, int]] = []  # (-hash, tokens): the highest hash on top
        self._tokens = 0

    def watch(self, chunks: Iterable[EncodedChunk]) -> Iterator[EncodedChunk]:
        for chunk in chunks:
            for doc_hash, tokens in chunk.train_documents:
                heapq.heappush(self._heap, (-doc_hash, tokens))
                self._tokens += tokens
                while self._tokens - self._heap[0][1] >= self.seq_len:
                    self._tokens -= heapq.heappop(self._heap)[1]
            yield chunk

    def pick(self, tokens: int) -> frozenset[int]:
        """The lowest-hash documents holding at least `tokens` tokens; none if all of them hold fewer."""
        picked, total = [], 0
        for neg_hash, count in sorted(self._heap, reverse=True):
            if total >= tokens:
                break
            picked.append(-neg_hash)
            total += count
        return frozenset(picked) if total >= tokens else frozenset()


def pack_holding_out(encode: Callable[[frozenset[int]], Iterable[EncodedChunk]], out_dir: Path, seq_len: int,
                     dtype: str, val_fraction: float) -> dict[str, dict]:
    """`pack_splits` of `encode(held_out)`'s chunks. If the hash split gave val no whole sample
    (and val_fraction asks for one), pack again with the fewest lowest-hash train documents held out
    that give it one; `encode` must yield the same documents each time."""
    reserve = HoldOutReserve(seq_len)
    splits = pack_splits(reserve.watch(encode(frozenset())), out_dir, seq_len, dtype)
    if val_fraction == 0 or splits["val"]["samples"] > 0:
        return splits
    held_out = reserve.pick(seq_len - splits["val"]["dropped_tokens"])
    if not held_out:
        return splits
    shutil.rmtree(out_dir)
    return pack_splits(encode(held_out), out_dir, seq_len, dtype)
