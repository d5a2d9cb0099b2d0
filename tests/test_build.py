"""The corpus build: the on-disk contract, up-to-date re-runs, and a build killed half-way."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from corpus_fixtures import SMALL_CORPUS_SPEC, read_samples, write_small_corpus_spec

from codemix.config.data_spec import load_data_spec
from codemix.data.build import build_corpus
from codemix.data.corpus import CORPUS_FILE, MANIFEST_FILE, SPLITS, TOKENIZER_FILE, Corpus
from codemix.data.tokenizer import file_hash
from codemix.errors import CodemixError, ConfigError

MANIFEST_KEYS = {
    "name", "kind", "licence", "provenance", "documents", "tokens", "bytes", "tokenizer_hash",
    "filters", "skipped", "splits", "build_command",
}


def shard_files(corpus_dir: Path) -> dict[str, bytes]:
    """Every byte the corpus's readers depend on: tokenizer and shard files (not timestamps)."""
    files = {TOKENIZER_FILE: (corpus_dir / TOKENIZER_FILE).read_bytes()}
    for path in sorted(p for p in corpus_dir.glob("*/*/**/*") if p.is_file()):
        files[str(path.relative_to(corpus_dir))] = path.read_bytes()
    return files


def test_small_corpus_follows_the_contract(small_corpus: Path):
    corpus = Corpus.open(small_corpus)
    assert corpus.name == "small" and corpus.seq_len == 128 and corpus.token_dtype == "uint16"
    assert [(s.name, s.kind, s.id) for s in corpus.sources] == [
        (s["name"], s["kind"], i) for i, s in enumerate(SMALL_CORPUS_SPEC["sources"])
    ]
    assert corpus.tokenizer_hash == file_hash(small_corpus / TOKENIZER_FILE)
    tokenizer = corpus.tokenizer()
    assert corpus.vocab_size == tokenizer.get_vocab_size() == 2048
    assert tokenizer.id_to_token(corpus.eos_id) == "<|endoftext|>"
    for source in corpus.sources:
        manifest = corpus.manifest(source.name)
        assert MANIFEST_KEYS <= manifest.keys()
        assert manifest["tokenizer_hash"] == corpus.tokenizer_hash
        assert manifest["bytes"] >= manifest["max_bytes"] or not manifest["capped"]
        documents = 0
        for split in SPLITS:
            counts = manifest["splits"][split]
            samples = read_samples(corpus.split_dir(source.name, split))
            assert len(samples) == counts["samples"] > 0
            assert samples.shape[1] == corpus.seq_len and samples.dtype == np.uint16
            assert counts["tokens"] == samples.size
            # an eos after each document (the last ones may sit in the dropped tail); test_shards checks exactly
            assert (samples == corpus.eos_id).sum() <= counts["documents"]
            documents += counts["documents"]
        assert documents == manifest["documents"]
        assert manifest["tokens"] == sum(c["tokens"] + c["dropped_tokens"] for c in manifest["splits"].values())
    code = tokenizer.decode(read_samples(corpus.split_dir("code_python", "train"))[:20].ravel().tolist())
    assert "def " in code and "import " in code


def test_rerun_keeps_complete_sources_and_removes_leftovers(small_corpus: Path, tmp_path: Path):
    copy = tmp_path / "small"
    shutil.copytree(small_corpus, copy)
    before = shard_files(copy)
    dead = subprocess.Popen(["true"])  # once reaped, its pid stands for a killed build's
    dead.wait()
    (copy / f"text_jargon.tmp-{dead.pid}").mkdir()
    (copy / f".corpus.json.tmp-{dead.pid}").write_text("{")
    messages: list[str] = []
    spec = load_data_spec(write_small_corpus_spec(tmp_path))
    build_corpus(spec, copy, progress=messages.append)
    assert sorted(messages[:2]) == [
        f"removing .corpus.json.tmp-{dead.pid} (left by an interrupted build)",
        f"removing text_jargon.tmp-{dead.pid} (left by an interrupted build)",
    ]
    assert all(m.endswith("up to date") for m in messages[2:]) and len(messages) == 3 + len(spec.sources)
    assert shard_files(copy) == before and not list(copy.glob("*tmp-*"))

    (copy / f"text_jargon.tmp-{os.getppid()}").mkdir()  # a live process: another build at work
    with pytest.raises(CodemixError, match=re.escape(f"another build (pid {os.getppid()}) is writing to {copy}")):
        build_corpus(spec, copy, progress=messages.append)

    # The pid of a killed build, reused by a process started after the leftover was last written: stale.
    (copy / f"text_jargon.tmp-{os.getppid()}").rmdir()
    with subprocess.Popen(["sleep", "60"]) as reused:
        leftover = copy / f"text_jargon.tmp-{reused.pid}"
        leftover.mkdir()
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
        messages.clear()
        build_corpus(spec, copy, progress=messages.append)
        reused.kill()
    assert messages[0] == f"removing {leftover.name} (left by an interrupted build)" and not leftover.exists()


def test_truncated_shard_is_refused_naming_it(small_corpus: Path, tmp_path: Path):
    copy = shutil.copytree(small_corpus, tmp_path / "small")
    shard = copy / "code_python" / "train" / "00000" / "shard.00000.mds"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ConfigError, match=re.escape(f"{shard}: {shard.stat().st_size} bytes, index.json records")):
        Corpus.open(copy).split_dir("code_python", "train")


def test_corpus_errors_name_the_path(small_corpus: Path, tmp_path: Path):
    copy = tmp_path / "small"
    shutil.copytree(small_corpus, copy)
    (copy / "markup_pydocs" / MANIFEST_FILE).unlink()
    corpus = Corpus.open(copy)
    with pytest.raises(ConfigError, match=re.escape(f"{copy / 'markup_pydocs' / MANIFEST_FILE}: missing")):
        corpus.manifest("markup_pydocs")
    with pytest.raises(ConfigError, match="no source named 'prose' \\(sources: code_python, text_jargon, "):
        corpus.split_dir("prose", "train")
    (copy / CORPUS_FILE).unlink()
    with pytest.raises(ConfigError, match=re.escape(f"{copy}: incomplete corpus (no corpus.json)")):
        Corpus.open(copy)
    with pytest.raises(ConfigError, match=re.escape(f"no corpus at {tmp_path / 'nothing'}")):
        Corpus.open(tmp_path / "nothing")


def test_seq_len_change_rebuilds_with_a_message(small_corpus: Path, tmp_path: Path):
    copy = tmp_path / "small"
    shutil.copytree(small_corpus, copy)
    messages: list[str] = []
    spec = load_data_spec(write_small_corpus_spec(tmp_path, seq_len=64))
    build_corpus(spec, copy, progress=messages.append)
    assert messages[0] == "seq_len changed from 128 to 64: rebuilding those sources"
    assert messages[1].endswith("up to date")  # the tokenizer does not depend on seq_len
    assert "text_jargon: built from another spec or tokenizer, rebuilding" in messages
    corpus = Corpus.open(copy)
    assert corpus.seq_len == 64
    assert read_samples(corpus.split_dir("text_jargon", "train")).shape[1] == 64


def test_killed_build_leaves_nothing_that_looks_complete(small_corpus: Path, tmp_path: Path):
    spec_path = write_small_corpus_spec(tmp_path)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "codemix.cli", "data", "build", str(spec_path), "--out", str(out), "--processes", "1"]
    first = out / SMALL_CORPUS_SPEC["sources"][0]["name"] / MANIFEST_FILE
    build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        while not first.exists() and build.poll() is None:
            time.sleep(0.005)
    finally:
        os.killpg(build.pid, signal.SIGKILL)  # the build and its tokenizer workers
        build.wait()
    assert build.returncode == -signal.SIGKILL, build.stderr.read().decode()
    assert not (out / CORPUS_FILE).exists()
    with pytest.raises(ConfigError, match="incomplete corpus"):
        Corpus.open(out)
    reference = shard_files(small_corpus)
    for manifest in out.glob(f"*/{MANIFEST_FILE}"):  # every source that looks complete is complete
        assert ".tmp-" not in manifest.parent.name
        name = manifest.parent.name
        assert {k: v for k, v in shard_files(out).items() if k.startswith(name + "/")} == {
            k: v for k, v in reference.items() if k.startswith(name + "/")
        }

    messages: list[str] = []  # re-run in-process: one interpreter start (streaming + torch imports) is enough
    build_corpus(load_data_spec(spec_path), out, processes=1, progress=messages.append)
    assert f"{first.parent.name}: up to date" in messages
    assert not list(out.glob("*.tmp-*")) and not list(out.glob(".*.tmp-*"))
    assert shard_files(out) == reference
    assert Corpus.open(out).source_names == Corpus.open(small_corpus).source_names
