"""A built corpus on disk, read-only: corpus.json, tokenizer.json and one folder per source.

Layout (the corpus-on-disk contract):
    <corpus>/tokenizer.json
    <corpus>/corpus.json                 written last: without it the corpus is incomplete
    <corpus>/<source>/manifest.json      written after the source's shards: without it the source is incomplete
    <corpus>/<source>/{train,val}/       MDS datasets, column "tokens", each sample exactly seq_len tokens
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from codemix.errors import ConfigError
from codemix.paths import corpora_dir

CORPUS_FILE = "corpus.json"
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
SPLITS = ("train", "val")
TOKENS_COLUMN = "tokens"


@dataclass(frozen=True)
class SourceInfo:
    name: str
    kind: str
    licence: str
    id: int  # index in corpus.json "sources": the source_id a batch carries


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as src:
            payload = json.load(src)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # malformed, or not text at all
        raise ConfigError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(payload, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return payload


def resolve_corpus(name_or_path: str | os.PathLike, home: str | os.PathLike | None = None) -> Path:
    """A corpus argument is a path when it exists or looks like one, else a name under corpora_dir(home);
    a remote url (s3://...) is fetched into its local cache, whose path is returned."""
    from codemix.data.remote import cache_folder, fetch_corpus, is_remote

    if is_remote(str(name_or_path)):
        return fetch_corpus(str(name_or_path), cache_folder(str(name_or_path), corpora_dir(home)))
    candidate = Path(name_or_path)
    looks_like_path = candidate.is_absolute() or len(candidate.parts) > 1 or str(name_or_path).startswith(".")
    if candidate.exists() or looks_like_path:
        return candidate
    return corpora_dir(home) / str(name_or_path)


class Corpus:
    """An opened, complete corpus. Open it with `Corpus.open(path)`."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self.name: str = meta["name"]
        self.tokenizer_hash: str = meta["tokenizer_hash"]
        self.seq_len: int = int(meta["seq_len"])
        self.vocab_size: int = int(meta["vocab_size"])
        self.eos_id: int = int(meta["eos_id"])
        self.bos_id: int = int(meta["bos_id"])
        self.pad_id: int = int(meta["pad_id"])
        self.token_dtype: str = meta["token_dtype"]
        self.sources: list[SourceInfo] = [
            SourceInfo(name=s["name"], kind=s["kind"], licence=s["licence"], id=i)
            for i, s in enumerate(meta["sources"])
        ]

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Corpus":
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"no corpus at {path} (build one with `codemix data build`)")
        meta_path = path / CORPUS_FILE
        if not meta_path.is_file():
            raise ConfigError(f"{path}: incomplete corpus (no {CORPUS_FILE}); run `codemix data build` again")
        meta = read_json(meta_path)
        missing = [key for key in _REQUIRED_KEYS if key not in meta]
        if missing:
            raise ConfigError(f"{meta_path}: missing keys {missing}")
        return cls(path, meta)

    @property
    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]

    def source(self, name: str) -> SourceInfo:
        for info in self.sources:
            if info.name == name:
                return info
        raise ConfigError(f"{self.path}: no source named '{name}' (sources: {', '.join(self.source_names)})")

    def manifest(self, source_name: str) -> dict:
        self.source(source_name)
        path = self.path / source_name / MANIFEST_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: missing, the source is incomplete; run `codemix data build` again")
        return read_json(path)

    def split_dir(self, source_name: str, split: str) -> Path:
        self.source(source_name)
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}' (splits: {', '.join(SPLITS)})")
        folder = self.path / source_name / split
        check_shards(folder, complete=self.remote is None or split == "val")
        return folder

    @property
    def remote(self) -> str | None:
        """The url this corpus was fetched from (its training shards stream from there), else None."""
        from codemix.data.remote import REMOTE_FILE

        path = self.path / REMOTE_FILE
        return read_json(path)["remote"] if path.is_file() else None

    def split_remote(self, source_name: str, split: str) -> str | None:
        """Where streaming downloads the split's shards from, for a fetched corpus; None for a local one."""
        return None if self.remote is None else f"{self.remote}/{source_name}/{split}"

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.path / TOKENIZER_FILE))

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, path={str(self.path)!r}, sources={self.source_names})"


def check_shards(split_dir: Path, complete: bool = True) -> None:
    """Refuse a split whose shard files are missing or not the size its index.json records: a
    truncated shard otherwise surfaces mid-training as streaming's "sample index not present".
    `complete` False: shards not downloaded yet (a remote corpus's) are not missing."""
    index_path = split_dir / "index.json"
    if not index_path.is_file():
        raise ConfigError(f"{index_path}: missing; rebuild the corpus with `codemix data build`")
    for shard in read_json(index_path).get("shards", []):
        raw = shard["raw_data"]
        path = split_dir / raw["basename"]
        size = path.stat().st_size if path.is_file() else None
        if size != raw["bytes"] and (complete or size is not None):
            found = "missing" if size is None else f"{size} bytes"
            raise ConfigError(f"{path}: {found}, {index_path.name} records {raw['bytes']} bytes: a truncated or "
                              "altered shard; rebuild the source with `codemix data build`")


_REQUIRED_KEYS = ("name", "tokenizer_hash", "seq_len", "vocab_size", "eos_id", "bos_id", "pad_id", "token_dtype", "sources")
