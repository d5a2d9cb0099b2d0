"""Every source gets a validation split a reader can open: the quickstart's splits open with a plain
StreamingDataset, a small source holds out documents its hash split left in train, and a source too
small for one sample per split is refused, naming it."""

import re
from pathlib import Path

import pytest
import yaml

from codemix.config.data_spec import load_data_spec, quickstart_spec_path
from codemix.data.build import build_corpus
from codemix.data.corpus import SPLITS, TOKENS_COLUMN, Corpus
from codemix.data.shards import is_val
from codemix.errors import ConfigError

SEQ_LEN = 32
VAL_FRACTION = 0.05


def test_every_split_of_the_quickstart_opens_with_a_plain_streaming_dataset(tmp_path: Path):
    from codemix._streaming import StreamingDataset

    spec = load_data_spec(quickstart_spec_path())
    corpus = Corpus.open(build_corpus(spec, tmp_path / "quickstart", processes=2, progress=lambda _: None))
    for source in corpus.sources:
        for split in SPLITS:
            dataset = StreamingDataset(local=str(corpus.split_dir(source.name, split)), batch_size=1, shuffle=False)
            assert len(dataset) == corpus.manifest(source.name)["splits"][split]["samples"] > 0, (source.name, split)
            assert dataset[0][TOKENS_COLUMN].shape == (corpus.seq_len,)
    # change logs are read as their entries (commit-message-sized), not one document per file
    changelogs = corpus.manifest("code_adjacent_changelogs")
    assert changelogs["documents"] > 20 * changelogs["read"]["files"]
    assert changelogs["splits"]["val"]["documents"] > 10


def write_spec(root: Path, texts: list[str]) -> Path:
    (root / "docs").mkdir(parents=True)
    for i, text in enumerate(texts):
        (root / "docs" / f"{i}.txt").write_text(text)
    spec = {"name": "small", "seq_len": SEQ_LEN, "val_fraction": VAL_FRACTION, "seed": 0,
            "tokenizer": {"vocab_size": 512, "sample_bytes_per_source": 20_000, "min_frequency": 2},
            "sources": [{"name": "notes", "kind": "text", "licence": "test", "reader": {"type": "dir", "path": "docs"}}]}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def test_a_source_whose_hash_split_leaves_val_empty_holds_out_its_lowest_hash_documents(tmp_path: Path):
    notes = (f"note {i}: the kettle boiled at {i * 7} past the hour and nobody came" for i in range(100))
    texts = [text for text in notes if not is_val(text, 0, VAL_FRACTION)][:40]  # the hash split holds out none
    corpus = Corpus.open(build_corpus(load_data_spec(write_spec(tmp_path, texts)), tmp_path / "out",
                                      processes=1, progress=lambda _: None))
    splits = corpus.manifest("notes")["splits"]
    assert splits["val"]["samples"] >= 1 and splits["train"]["samples"] > splits["val"]["samples"]
    assert splits["val"]["documents"] + splits["train"]["documents"] == 40
    assert splits["val"]["documents"] < 40 * 0.2  # only as many as one sample needs


def test_a_source_too_small_for_a_sample_per_split_is_refused_naming_it(tmp_path: Path):
    spec = load_data_spec(write_spec(tmp_path, ["a few words", "and a few more words here"]))
    with pytest.raises(ConfigError, match=re.escape("source 'notes': too small to split: its ")):
        build_corpus(spec, tmp_path / "out", processes=1, progress=lambda _: None)
