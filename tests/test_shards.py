"""Tokenize (once, into a slice's token store) + pack + write: exact samples, eos between documents, the
dropped documents left out, a deterministic validation split."""

import random
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import read_samples
from tokenizers import Tokenizer

from codemix.data import shards, slice_tokens
from codemix.data.corpus import SPLITS
from codemix.data.shards import EncodeSettings, SamplePacker, is_val, pack_holding_out, pack_splits
from codemix.data.slice_tokens import SliceTokens, TokenWriter
from codemix.data.tokenizer import save_tokenizer, special_ids, train_bpe

SEQ_LEN = 64
SEED = 3
VAL_FRACTION = 0.2
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """Paragraphs of real stdlib code: a few hundred documents of very different lengths."""
    paragraphs = []
    for name in ("textwrap.py", "shlex.py", "fnmatch.py", "bisect.py", "colorsys.py"):
        paragraphs += [p for p in (STDLIB / name).read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return paragraphs


@pytest.fixture(scope="module")
def settings(documents: list[str], tmp_path_factory: pytest.TempPathFactory) -> EncodeSettings:
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer = train_bpe(documents, vocab_size=512, min_frequency=2)
    save_tokenizer(tokenizer, path)
    return EncodeSettings(str(path), special_ids(tokenizer)["eos_id"], "uint16", SEED, VAL_FRACTION)


def stored(documents: Iterable[str], settings: EncodeSettings, folder: Path) -> SliceTokens:
    """The documents as a scan task stores them (tokenized once), opened as its pack task does."""
    writer = TokenWriter(folder, settings)
    for document in documents:
        writer.add(document)
    writer.finish({"read": "what the scan counted"})
    return SliceTokens(folder, settings)


def test_samples_are_the_kept_documents_eos_separated_and_cut_exactly(
    documents: list[str], settings: EncodeSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # many chunks, both tokenizing and packing: documents and samples cross chunk boundaries
    monkeypatch.setattr(slice_tokens, "CHUNK_CHARS", 2000)
    monkeypatch.setattr(slice_tokens, "CHUNK_TOKENS", 300)
    tokens = stored(iter(documents), settings, tmp_path / "tokens")
    dropped = {0, 7, len(documents) - 1}
    counts = pack_splits(tokens.chunks(dropped), tmp_path, SEQ_LEN, "uint16")
    kept = [d for n, d in enumerate(documents) if n not in dropped]
    assert tokens.kept(dropped) == {"documents": len(kept), "bytes": sum(len(d.encode()) for d in kept)}
    assert tokens.read == {"read": "what the scan counted"}

    tokenizer = Tokenizer.from_file(settings.tokenizer_path)
    for split in SPLITS:
        docs = [d for d in kept if is_val(d, SEED, VAL_FRACTION) == (split == "val")]
        stream = np.array([t for d in docs for t in tokenizer.encode(d).ids + [settings.eos_id]], dtype=np.uint16)
        full = len(stream) // SEQ_LEN
        samples = read_samples(tmp_path / split)
        np.testing.assert_array_equal(samples, stream[: full * SEQ_LEN].reshape(full, SEQ_LEN))
        assert counts[split] == {
            "documents": len(docs),
            "samples": full,
            "tokens": full * SEQ_LEN,
            "dropped_tokens": len(stream) - full * SEQ_LEN,
        }
    assert 0.1 * len(documents) < counts["val"]["documents"] < 0.3 * len(documents)


def test_split_depends_on_content_not_order(documents: list[str], settings: EncodeSettings, tmp_path: Path):
    shuffled = documents[:]
    random.Random(0).shuffle(shuffled)
    ordered = pack_splits(stored(documents, settings, tmp_path / "a").chunks(set()), tmp_path / "ordered", SEQ_LEN,
                          "uint16")
    reordered = pack_splits(stored(shuffled, settings, tmp_path / "b").chunks(set()), tmp_path / "shuffled",
                            SEQ_LEN, "uint16")
    for split in SPLITS:
        assert ordered[split]["documents"] == reordered[split]["documents"]
        total = ordered[split]["tokens"] + ordered[split]["dropped_tokens"]
        assert total == reordered[split]["tokens"] + reordered[split]["dropped_tokens"]
    # the seed picks the split: another seed holds out other documents
    held_out = {seed: {d for d in documents if is_val(d, seed, VAL_FRACTION)} for seed in (SEED, SEED + 1)}
    assert held_out[SEED] != held_out[SEED + 1]


def test_validation_fraction_zero_gives_an_empty_readable_split(documents: list[str], settings: EncodeSettings, tmp_path: Path):
    no_val = EncodeSettings(settings.tokenizer_path, settings.eos_id, "uint16", SEED, 0.0)
    tokens = stored(documents[:20], no_val, tmp_path / "tokens")
    counts = pack_holding_out(lambda held_out: tokens.chunks(set(), held_out), tmp_path / "out", SEQ_LEN, "uint16",
                              no_val.val_fraction)
    assert counts["val"] == {"documents": 0, "samples": 0, "tokens": 0, "dropped_tokens": 0}
    assert len(read_samples(tmp_path / "out" / "val")) == 0 and counts["train"]["documents"] == 20


def test_a_split_without_a_val_sample_holds_out_its_lowest_hash_documents(documents: list[str],
                                                                          settings: EncodeSettings, tmp_path: Path):
    train_only = [d for d in documents if not is_val(d, SEED, VAL_FRACTION)]
    tokens = stored(train_only, settings, tmp_path / "tokens")
    counts = pack_holding_out(lambda held_out: tokens.chunks(set(), held_out), tmp_path / "out", SEQ_LEN, "uint16",
                              VAL_FRACTION)
    held = sorted(train_only, key=lambda d: shards.split_hash(d, SEED))[:counts["val"]["documents"]]
    tokenizer = Tokenizer.from_file(settings.tokenizer_path)
    held_tokens = sum(len(tokenizer.encode(d).ids) + 1 for d in held)
    assert counts["val"]["samples"] >= 1 and held_tokens >= SEQ_LEN  # the fewest lowest-hash ones filling a sample
    assert held_tokens - len(tokenizer.encode(held[-1]).ids) - 1 < SEQ_LEN
    assert counts["val"]["documents"] + counts["train"]["documents"] == len(train_only)
    assert len(read_samples(tmp_path / "out" / "val")) == counts["val"]["samples"]


def test_uint32_tokens_survive_the_round_trip(tmp_path: Path):
    packer = SamplePacker(tmp_path / "train", seq_len=4, dtype="uint32")
    packer.add(np.array([70_000, 1, 2], dtype=np.uint32), documents=1)
    packer.add(np.array([3, 100_000, 5, 6, 7], dtype=np.uint32), documents=1)
    counts = packer.finish()
    np.testing.assert_array_equal(read_samples(tmp_path / "train"), [[70_000, 1, 2, 3], [100_000, 5, 6, 7]])
    assert (counts.samples, counts.tokens, counts.dropped_tokens) == (2, 8, 0)
