"""`codemix data build|inspect`: where corpora go, the inspect table, and errors that name value and file."""

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
    one_source = {**SMALL_CORPUS_SPEC["sources"][2], "max_bytes": 30_000}
    spec = write_small_corpus_spec(tmp_path, name="mini", sources=[one_source], tokenizer={"vocab_size": 512})
    code, out, err = run(["data", "build", str(spec), "--set", "seq_len=32", "--home", str(tmp_path / "home")], capsys)
    assert code == 0, err
    where = tmp_path / "home" / "corpora" / "mini"
    assert out.rstrip().endswith(f"corpus mini written to {where}")
    assert "markup_pydocs: " in out and " documents, " in out  # progress line per source
    corpus = Corpus.open(where)
    assert corpus.seq_len == 32 and corpus.vocab_size == 512
    assert corpus.manifest("markup_pydocs")["build_command"] == f"codemix data build {spec} --set=seq_len=32"


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

    code, _, err = run(["data", "build", str(spec), "--processes", "0"], capsys)
    assert code == 2 and err == "codemix: error: --processes 0: must be at least 1\n"

    code, _, err = run(["data", "inspect", str(tmp_path / "no_corpus")], capsys)
    assert code == 2 and str(tmp_path / "no_corpus") in err and "codemix data build" in err
