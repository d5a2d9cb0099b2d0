"""A slice's kept documents as tokens, from the build's scan pass to its pack pass (codemix.data.tasks).

The scan task reads, cleans and tokenizes each kept document once and stores the tokens here; the
pack task drops the duplicates the decide pass found and packs the rest, without reading, cleaning or
tokenizing the text a second time. One folder per slice:

    tokens.bin  every kept document's tokens, in read order, no eos (the corpus's token dtype)
    docs.npy    per document: its tokens, its UTF-8 bytes, its split hash (shards.split_hash)
    read.json   what reading and cleaning the slice counted (files, skipped, filters, capped)

The tokens take about half the bytes of the text (2-byte ids, ~4 characters a token) and live only
until the slice is packed."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from codemix.atomic import write_json_atomic
from codemix.data.corpus import read_json
from codemix.data.shards import EncodedChunk, EncodeSettings, split_chunk, split_hash

TOKENS_FILE, DOCS_FILE, READ_FILE = "tokens.bin", "docs.npy", "read.json"
DOCS = np.dtype([("tokens", "<u4"), ("bytes", "<u8"), ("hash", "<u8")])
# Documents are tokenized in batches of about this many characters (encode_batch's per-call cost stays
# small), and packed in chunks of about as many tokens as such a batch gives.
CHUNK_CHARS = 1 << 16
CHUNK_TOKENS = CHUNK_CHARS // 4


class TokenWriter:
    """Tokenizes documents in batches of about CHUNK_CHARS characters and appends them to the slice's folder."""

    def __init__(self, folder: Path, settings: EncodeSettings):
        folder.mkdir(parents=True)
        self.folder = folder
        self.settings = settings
        self._tokenizer = Tokenizer.from_file(settings.tokenizer_path)
        self._tokens = open(folder / TOKENS_FILE, "wb")
        self._docs: list[tuple[int, int, int]] = []
        self._pending: list[str] = []
        self._chars = 0

    def add(self, text: str) -> None:
        self._pending.append(text)
        self._chars += len(text)
        if self._chars >= CHUNK_CHARS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        ids = [e.ids for e in self._tokenizer.encode_batch_fast(self._pending, add_special_tokens=False)]
        out = np.empty(sum(len(doc) for doc in ids), dtype=self.settings.dtype)
        pos = 0
        for text, doc in zip(self._pending, ids):
            out[pos : pos + len(doc)] = doc
            pos += len(doc)
            self._docs.append((len(doc), len(text.encode("utf-8")), split_hash(text, self.settings.seed)))
        self._tokens.write(out.tobytes())
        self._pending, self._chars = [], 0

    def finish(self, read: dict) -> None:
        """Write the rest and the per-document table; `read` is what reading and cleaning counted."""
        self._flush()
        self._tokens.close()
        np.save(self.folder / DOCS_FILE, np.array(self._docs, dtype=DOCS))
        write_json_atomic(self.folder / READ_FILE, read)


class SliceTokens:
    """A scanned slice's stored tokens, for packing."""

    def __init__(self, folder: Path, settings: EncodeSettings):
        self.settings = settings
        self.read = read_json(folder / READ_FILE)
        self.docs = np.load(folder / DOCS_FILE)
        size = (folder / TOKENS_FILE).stat().st_size
        # mapped, not loaded: a slice that is a whole source (a capped or unsliceable one) may be large
        self._tokens = (np.memmap(folder / TOKENS_FILE, dtype=settings.dtype, mode="r") if size
                        else np.empty(0, settings.dtype))  # memmap refuses an empty file
        self._ends = np.cumsum(self.docs["tokens"], dtype=np.int64)

    def kept(self, dropped: set[int]) -> dict[str, int]:
        keep = self._keep_mask(dropped)
        return {"documents": int(keep.sum()), "bytes": int(self.docs["bytes"][keep].sum())}

    def chunks(self, dropped: set[int], held_out: frozenset[int] = frozenset()) -> Iterator[EncodedChunk]:
        """The documents not in `dropped` (positions), split and eos-terminated (shards.split_chunk)."""
        keep = self._keep_mask(dropped)
        ids, hashes, tokens = [], [], 0
        for position in np.flatnonzero(keep).tolist():
            end = int(self._ends[position])
            ids.append(self._tokens[end - int(self.docs["tokens"][position]) : end])
            hashes.append(int(self.docs["hash"][position]))
            tokens += len(ids[-1])
            if tokens >= CHUNK_TOKENS:
                yield split_chunk(ids, hashes, self.settings, held_out)
                ids, hashes, tokens = [], [], 0
        if ids:
            yield split_chunk(ids, hashes, self.settings, held_out)

    def _keep_mask(self, dropped: set[int]) -> np.ndarray:
        keep = np.ones(len(self.docs), dtype=bool)
        keep[list(dropped)] = False
        return keep
