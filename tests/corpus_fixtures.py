"""`small_corpus`: a small real corpus, built once per test session by the real build.

Four sources, one per study kind, read from this machine (the Python stdlib, the Jargon File, the
Python documentation's reST, Debian change logs) and capped so the build takes seconds on 2 cores.
Tests that need shards, a tokenizer and manifests use it instead of making their own."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

SMALL_CORPUS_SPEC = {
    "name": "small",
    "seq_len": 128,
    "val_fraction": 0.05,
    "seed": 0,
    "dedup": True,
    "tokenizer": {"vocab_size": 2048, "sample_bytes_per_source": 100_000, "min_frequency": 2},
    "sources": [
        {
            "name": "code_python",
            "kind": "code",
            "licence": "PSF-2.0",
            "provenance": "CPython standard library of the running interpreter",
            "reader": {
                "type": "dir",
                "path": "${python_stdlib:}",
                "include": ["**/*.py"],
                "exclude": ["site-packages/**", "test/**", "**/test/**", "**/tests/**", "**/idle_test/**"],
            },
            "max_bytes": 300_000,
        },
        {
            "name": "text_jargon",
            "kind": "text",
            "licence": "public domain",
            "provenance": "The Jargon File, Debian package jargon-text",
            "reader": {
                "type": "files",
                "paths": ["/usr/share/doc/jargon-text/jargon.txt.gz"],
                "split_on": "\\n(?=   :[^\\n]+:)",
                "min_chars": 20,
            },
            "max_bytes": 300_000,
        },
        {
            "name": "markup_pydocs",
            "kind": "markup",
            "licence": "PSF-2.0",
            "provenance": "Python 3.11 documentation reST sources, Debian package python3.11-doc",
            "reader": {"type": "dir", "path": "/usr/share/doc/python3.11/html/_sources", "include": ["**/*.rst.txt"]},
            "max_bytes": 150_000,
        },
        {
            "name": "code_adjacent_changelogs",
            "kind": "code_adjacent",
            "licence": "per package: /usr/share/doc/<package>/copyright",
            "provenance": "Debian package change logs",
            # one document per release entry ("pkg (version) dist; urgency=..."): commit-message-sized
            # documents, and enough of them that the 5% validation split is never empty
            "reader": {
                "type": "files",
                "paths": ["/usr/share/doc/*/changelog*.gz"],
                "split_on": "\\n(?=\\S+ \\([^)\\n]*\\) [^;\\n]*; urgency=)",
            },
            "max_bytes": 150_000,
        },
    ],
}


def read_samples(split_dir: Path) -> np.ndarray:
    """All samples of an MDS split, through streaming's own shard reader: [samples, seq_len]."""
    from codemix._streaming import streaming

    index = json.loads((split_dir / "index.json").read_text())
    rows = []
    for shard in index["shards"]:
        reader = streaming.base.format.reader_from_json(str(split_dir), None, shard)
        rows += [reader.get_item(i)["tokens"] for i in range(reader.samples)]
    return np.stack(rows) if rows else np.empty((0, 0))


def corpus_bytes(corpus_dir: Path) -> dict[str, bytes]:
    """The shard files, indexes and tokenizer: what a reader depends on."""
    return {str(p.relative_to(corpus_dir)): p.read_bytes() for p in sorted(corpus_dir.rglob("*"))
            if p.is_file() and (p.suffix in (".mds",) or p.name in ("index.json", "tokenizer.json"))}


def write_small_corpus_spec(folder: Path, **changes) -> Path:
    """Write the small corpus's data YAML (top-level keys replaced by `changes`) and return its path."""
    path = folder / "small_corpus.yaml"
    path.write_text(yaml.safe_dump({**SMALL_CORPUS_SPEC, **changes}, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def small_corpus(isolated_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the built small corpus (under the session's CODEMIX_HOME); treat it as read-only."""
    from codemix.config.data_spec import load_data_spec
    from codemix.data.build import build_corpus
    from codemix.paths import corpora_dir

    spec = load_data_spec(write_small_corpus_spec(tmp_path_factory.mktemp("small_corpus_spec")))
    return build_corpus(spec, corpora_dir() / spec.name, processes=2, command="tests: small_corpus", progress=lambda _: None)
