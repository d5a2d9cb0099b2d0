"""The corpus tokenizer: byte-level round trip, special tokens, identity by file hash, loading."""

import hashlib
import sysconfig
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from codemix.data.tokenizer import (
    BOS,
    EOS,
    PAD,
    file_hash,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    token_dtype,
    train_bpe,
)
from codemix.errors import ConfigError

STDLIB = Path(sysconfig.get_paths()["stdlib"])
ODD_TEXTS = [
    "def f(x):\n\treturn x  \r\n",  # tabs, trailing spaces, CRLF
    "naïve café — 東京 🐍 ½",  # accents, CJK, emoji (4-byte UTF-8)
    "   leading spaces and a\u00a0no-break space",
    "",
]


@pytest.fixture(scope="module")
def stdlib_texts() -> list[str]:
    return [(STDLIB / name).read_text(encoding="utf-8") for name in ("textwrap.py", "string.py", "glob.py", "shlex.py")]


@pytest.fixture(scope="module")
def tokenizer(stdlib_texts: list[str]) -> Tokenizer:
    return train_bpe(stdlib_texts, vocab_size=600, min_frequency=2)


def test_round_trip_is_lossless(tokenizer: Tokenizer, stdlib_texts: list[str]):
    for text in stdlib_texts + ODD_TEXTS:
        assert tokenizer.decode(tokenizer.encode(text).ids) == text
    # merges were learnt: code compresses well below one token per byte
    ids = tokenizer.encode(stdlib_texts[0]).ids
    assert len(ids) < 0.5 * len(stdlib_texts[0].encode())


def test_special_tokens_have_ids_and_stay_whole(tokenizer: Tokenizer):
    ids = special_ids(tokenizer)
    assert sorted(ids.values()) == [0, 1, 2]
    assert tokenizer.encode(f"a{EOS}b").ids[1] == ids["eos_id"]
    assert tokenizer.get_vocab_size() == 600


def test_hash_is_the_saved_files_sha256(tokenizer: Tokenizer, stdlib_texts: list[str], tmp_path: Path):
    first = save_tokenizer(tokenizer, tmp_path / "a.json")
    assert first == hashlib.sha256((tmp_path / "a.json").read_bytes()).hexdigest()[:16] == file_hash(tmp_path / "a.json")
    assert save_tokenizer(tokenizer, tmp_path / "b.json") == first
    tokenizer.save(str(tmp_path / "plain.json"))  # the bytes of tokenizers' own save: hashes of built corpora stay
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    other = train_bpe(stdlib_texts, vocab_size=700, min_frequency=2)
    replaced = save_tokenizer(other, tmp_path / "a.json")  # over the first: the hash is of the new file
    assert replaced != first and replaced == file_hash(tmp_path / "a.json") == save_tokenizer(other, tmp_path / "c.json")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_loading_adds_missing_special_tokens(stdlib_texts: list[str], tmp_path: Path):
    bare = Tokenizer(models.BPE())
    bare.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bare.train_from_iterator(stdlib_texts, trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS], show_progress=False))
    bare.save(str(tmp_path / "bare.json"))
    loaded = load_tokenizer(tmp_path / "bare.json")
    ids = special_ids(loaded)
    assert ids["eos_id"] == bare.token_to_id(EOS)  # kept where it was
    assert loaded.id_to_token(ids["bos_id"]) == BOS and loaded.id_to_token(ids["pad_id"]) == PAD


def test_bad_tokenizer_files_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="spec.yaml: tokenizer file .*missing.json does not exist"):
        load_tokenizer(tmp_path / "missing.json", origin="spec.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json is not a tokenizers JSON file"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="vocab_size 100"):
        train_bpe(["abc"], vocab_size=100, min_frequency=1)


def test_token_dtype_follows_vocab_size():
    assert token_dtype(65536) == "uint16" and token_dtype(65537) == "uint32"
