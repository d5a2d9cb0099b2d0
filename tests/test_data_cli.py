"""`codemix data build|inspect`: where corpora go, the inspect table, and errors that name value and file."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from corpus_fixtures import SMALL_CORPUS_SPEC, write_small_corpus_spec

from codemix.cli import main
from codemix.data.corpus import Corpus
from codemix.data.inspect import COLUMNS, corpus_rows


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_defaults_to_home_corpora_and_records_the_command(tmp_path: Path, capsys: pytest.CaptureFixture):
    one_source = {**SMALL_CORPUS_SPEC["sources"][1], "max_bytes": 30_000}
    spec = write_small_corpus_spec(tmp_path, name="mini", sources=[one_source], tokenizer={"vocab_size": 512})
    code, out, err = run(["data", "build", str(spec), "--set", "seq_len=32", "--home", str(tmp_path / "home")], capsys)
    assert code == 0, err
    where = tmp_path / "home" / "corpora" / "mini"
    assert out.rstrip().endswith(f"corpus mini written to {where}")
    assert "text_jargon: " in out and " documents, " in out  # progress line per source
    corpus = Corpus.open(where)
    assert corpus.seq_len == 32 and corpus.vocab_size == 512
    assert corpus.manifest("text_jargon")["build_command"] == f"codemix data build {spec} --set=seq_len=32"


def test_inspect_table(small_corpus: Path, capsys: pytest.CaptureFixture):
    code, by_path, _ = run(["data", "inspect", str(small_corpus)], capsys)
    assert code == 0
    code, by_name, _ = run(["data", "inspect", "small"], capsys)  # a name resolves under $CODEMIX_HOME/corpora
    assert code == 0 and by_name == by_path
    header, columns, *rows = by_path.splitlines()
    assert header.startswith(f"corpus small at {small_corpus}: ") and "seq_len 128" in header
    assert columns.split() == list(COLUMNS)
    corpus = Corpus.open(small_corpus)
    assert [row.split()[:2] for row in rows] == [[s.name, s.kind] for s in corpus.sources]
    for row, source in zip(rows, corpus.sources):
        manifest = corpus.manifest(source.name)
        assert f"{manifest['tokens']:,}" in row and row.endswith(source.licence)
    shares = [float(row.split()[4].rstrip("%")) for row in rows]
    assert sum(shares) == pytest.approx(100, abs=0.3)


def test_corpus_rows_match_the_manifests(small_corpus: Path):
    corpus = Corpus.open(small_corpus)
    rows = corpus_rows(corpus)
    total = sum(corpus.manifest(s.name)["tokens"] for s in corpus.sources)
    for row, source in zip(rows, corpus.sources):
        manifest = corpus.manifest(source.name)
        assert row["documents"] == manifest["documents"] and row["tokens"] == manifest["tokens"]
        assert row["share"] == manifest["tokens"] / total
        assert row["filters"] == {k: v for k, v in manifest["filters"].items() if v}
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "build"], "give a data YAML or --quickstart"),
        (["data", "build", "x.yaml", "--quickstart"], "give a data YAML ('x.yaml') or --quickstart, not both"),
        (["data", "inspect"], "give a corpus folder or name or --quickstart"),
    ],
)
def test_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture):
    code, _, err = run(argv, capsys)
    assert code == 2 and err == f"codemix: error: {message}\n"


def test_bad_input_names_value_and_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    missing = tmp_path / "missing.yaml"
    code, _, err = run(["data", "build", str(missing)], capsys)
    assert code == 2 and err == f"codemix: error: {missing}: no such file\n"

    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(yaml.safe_dump({**SMALL_CORPUS_SPEC, "seq_lenn": 64}))
    code, _, err = run(["data", "build", str(misspelt)], capsys)
    assert code == 2 and str(misspelt) in err and "seq_lenn" in err

    no_input = {**SMALL_CORPUS_SPEC["sources"][1], "reader": {"type": "files", "paths": [str(tmp_path / "nowhere.txt")]}}
    spec = write_small_corpus_spec(tmp_path, sources=[no_input])
    code, _, err = run(["data", "build", str(spec)], capsys)
    assert code == 2 and str(spec) in err and str(tmp_path / "nowhere.txt") in err

    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.bin").write_bytes(b"\x7fELF\x00\x01" * 100)
    (unreadable / "b.txt").write_bytes("caf\xe9 latin-1".encode("latin-1") * 10)
    binary_only = {**SMALL_CORPUS_SPEC["sources"][1], "reader": {"type": "dir", "path": str(unreadable)}}
    code, _, err = run(["data", "build", str(write_small_corpus_spec(tmp_path, sources=[binary_only])),
                        "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err == (f"codemix: error: source 'text_jargon': {unreadable}: no UTF-8 text in 2 file(s) "
                                 "(1 binary, 1 not UTF-8)\n")

    code, _, err = run(["data", "build", str(spec), "--workers", "0"], capsys)
    assert code == 2 and err == "codemix: error: --workers 0: must be at least 1\n"

    code, _, err = run(["data", "inspect", str(tmp_path / "no_corpus")], capsys)
    assert code == 2 and str(tmp_path / "no_corpus") in err and "codemix data build" in err


def test_add_puts_sources_into_a_built_corpus_with_its_tokenizer(small_corpus: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture):
    from codemix.config.data_spec import load_data_spec
    from codemix.data.build import build_corpus

    corpus_dir = shutil.copytree(small_corpus, tmp_path / "small")
    before = Corpus.open(corpus_dir)
    own_manifests = {s.name: (corpus_dir / s.name / "manifest.json").read_bytes() for s in before.sources}
    rows = [{"text": f"def f{i}(x):\n    return x * {i} + {i * i}\n"} for i in range(60)] + [{"text": "def f0(x):\n    return x * 0 + 0\n"}]
    (tmp_path / "extra.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "extra_python", "kind": "synthetic", "licence": "test",
                                                    "reader": {"type": "jsonl", "path": "extra.jsonl"}}]}))

    code, out, err = run(["data", "add", str(corpus_dir), str(sources)], capsys)
    assert code == 0, err
    corpus = Corpus.open(corpus_dir)
    assert corpus.tokenizer_hash == before.tokenizer_hash and corpus.seq_len == before.seq_len
    assert [s.name for s in corpus.sources] == before.source_names + ["extra_python"]
    manifest = corpus.manifest("extra_python")
    assert (manifest["kind"], manifest["documents"], manifest["tokenizer_hash"]) == ("synthetic", 60, corpus.tokenizer_hash)
    assert manifest["filters"]["duplicate"] == 1  # duplicates are removed among the added documents
    assert manifest["build_command"] == f"codemix data add {corpus_dir} {sources}"
    assert {s.name: (corpus_dir / s.name / "manifest.json").read_bytes() for s in before.sources} == own_manifests
    assert "extra_python" in out and "synthetic" in out  # the inspect table

    # Again: nothing to do. Rebuilding the corpus from its own data YAML keeps the added source listed.
    code, out, _ = run(["data", "add", str(corpus_dir), str(sources)], capsys)
    assert code == 0 and "extra_python: up to date" in out
    build_corpus(load_data_spec(write_small_corpus_spec(tmp_path)), corpus_dir, progress=lambda _: None)
    assert Corpus.open(corpus_dir).source_names == before.source_names + ["extra_python"]

    # A name the corpus's own sources (or kinds) already use is refused, naming it; nothing changes.
    for name, reason in (("code_python", "already has a source named 'code_python'"), ("markup", "is also a kind")):
        sources.write_text(yaml.safe_dump({"sources": [{"name": name, "kind": "synthetic", "licence": "test",
                                                        "reader": {"type": "jsonl", "path": "extra.jsonl"}}]}))
        code, _, err = run(["data", "add", str(corpus_dir), str(sources)], capsys)
        assert code == 2 and str(corpus_dir) in err and reason in err
    sources.write_text(yaml.safe_dump({"sources": [], "tokenizer": {"vocab_size": 512}}))  # the corpus has one
    code, _, err = run(["data", "add", str(corpus_dir), str(sources)], capsys)
    assert code == 2 and str(sources) in err and "tokenizer" in err
    assert Corpus.open(corpus_dir).source_names == before.source_names + ["extra_python"]

    # A rebuild with another tokenizer drops the added source from the listing, and says so.
    said = []
    build_corpus(load_data_spec(write_small_corpus_spec(tmp_path), ["tokenizer.vocab_size=1024"]), corpus_dir,
                 progress=said.append)
    assert Corpus.open(corpus_dir).source_names == before.source_names
    assert any(line.startswith("extra_python: added with another tokenizer") for line in said)
