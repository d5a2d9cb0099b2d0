"""The data YAML: loading, path resolution, resolvers and the up-front validation errors."""

import glob
import logging
import sysconfig
import textwrap
from pathlib import Path

import pytest

from codemix.config.data_spec import (
    DataSpec,
    code_filters_on,
    input_patterns,
    load_data_spec,
    quickstart_spec_path,
)
from codemix.config.loading import read_yaml
from codemix.errors import ConfigError

STUDY_KIND_BY_SOURCE = {
    "code_python": "code",
    "code_go": "code",
    "code_rust": "code",
    "text_kjv": "text",
    "text_gcide": "text",
    "text_jargon": "text",
    "markup_pydocs": "markup",
    "code_adjacent_changelogs": "code_adjacent",
}


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    return folder


VALID = """\
    name: small
    sources:
      - name: prose
        kind: text
        licence: CC0
        reader: {type: dir, path: docs}
      - name: notes
        kind: hq
        licence: CC0
        reader: {type: files, paths: [docs/a.txt]}
        max_bytes: 100
"""


def test_quickstart_loads_and_its_required_inputs_exist():
    declared = read_yaml(quickstart_spec_path()).sources
    assert {s.name: s.kind for s in declared} == STUDY_KIND_BY_SOURCE
    spec = load_data_spec(quickstart_spec_path())
    assert spec.name == "quickstart"
    assert spec.tokenizer.vocab_size == 8192 and spec.seq_len == 512
    # Optional sources drop out where their Debian package is missing; the others never do.
    loaded = [s.name for s in spec.sources]
    assert loaded == [s.name for s in declared if s.name in loaded]
    assert {s.name for s in declared if not s.get("optional", False)} <= set(loaded)
    for source in spec.sources:
        assert source.licence and source.provenance and source.max_bytes
        assert all(glob.glob(p) for p in input_patterns(source.reader)), source.name
    by_name = {s.name: s for s in spec.sources}
    stdlib = sysconfig.get_paths()["stdlib"]
    assert by_name["code_python"].reader.path == stdlib
    assert stdlib in by_name["code_python"].provenance
    assert 15_000_000 <= sum(s.max_bytes for s in declared) <= 25_000_000  # CPU-sized


def test_relative_paths_resolve_against_the_yaml_directory(tmp_path, docs_dir, monkeypatch):
    monkeypatch.chdir("/")
    spec = load_data_spec(write_spec(tmp_path, VALID))
    assert isinstance(spec, DataSpec)
    assert spec.sources[0].reader.path == str(docs_dir)
    assert spec.sources[1].reader.paths == [str(docs_dir / "a.txt")]
    assert [s.kind for s in spec.sources] == ["text", "hq"]


def test_overrides_apply_and_misspelt_override_names_the_command_line(tmp_path, docs_dir):
    path = write_spec(tmp_path, VALID)
    assert load_data_spec(path, ["seq_len=1024", "tokenizer.vocab_size=4096"]).seq_len == 1024
    with pytest.raises(ConfigError, match=r"command line.*vocab_sise"):
        load_data_spec(path, ["tokenizer.vocab_sise=4096"])


def test_misspelt_key_names_key_and_file(tmp_path, docs_dir):
    path = write_spec(tmp_path, VALID.replace("max_bytes: 100", "max_byte: 100"))
    with pytest.raises(ConfigError, match=r"data\.yaml.*max_byte"):
        load_data_spec(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("type: dir", "type: directory"), r"reader\.type 'directory'"),
        (("path: docs}", "path: nowhere}"), r"'prose'.*no such path '.*nowhere'"),
        (("name: notes", "name: prose"), r"source name 'prose' appears twice"),
        (("kind: hq", "kind: High-Quality"), r"kind 'High-Quality' is not an identifier"),
        (("kind: hq", "kind: prose"), r"source name 'prose' is also a kind"),
        (("max_bytes: 100", "max_bytes: -5"), r"max_bytes -5"),
        (("max_bytes: 100", "near_dedup: simhash"), r"source 'notes': near_dedup 'simhash': expected 'minhash'"),
        (("name: small", "name: small\n    minhash: {buckets: 0}"), r"minhash\.buckets 0: must be at least 1"),
        (("name: small", "name: small\n    val_fraction: 1.0"), r"val_fraction 1\.0"),
        (("{type: dir, path: docs}", "{type: dir}"), r"'dir' needs 'path'"),
        (("{type: files, paths: [docs/a.txt]}", "{type: files}"), r"'files' needs 'paths'"),
        (("{type: dir, path: docs}", "{type: command}"), r"'command' needs 'command'"),
        (("{type: dir, path: docs}", "{type: command, command: [no-such-program-x]}"), r"'no-such-program-x' not found"),
        (("{type: dir, path: docs}", "{type: dir, path: docs, split_on: '(unclosed'}"), r"split_on '\(unclosed'"),
        (("licence: CC0\n        reader: {type: dir", "reader: {type: dir"), r"licence"),
    ],
)
def test_bad_spec_is_refused_naming_value_and_file(tmp_path, docs_dir, change, message):
    path = write_spec(tmp_path, VALID.replace(*change, 1))
    with pytest.raises(ConfigError, match=message) as err:
        load_data_spec(path)
    assert str(path) in str(err.value)


def test_missing_optional_source_is_dropped_with_a_warning(tmp_path, docs_dir, caplog):
    body = VALID.replace("reader: {type: dir, path: docs}", "reader: {type: dir, path: gone/*/src}\n        optional: true")
    with caplog.at_level(logging.WARNING):
        spec = load_data_spec(write_spec(tmp_path, body))
    assert [s.name for s in spec.sources] == ["notes"]
    assert "optional source 'prose' skipped" in caplog.text and "gone/*/src" in caplog.text


def test_code_filters_default_to_code_kind_only(tmp_path, docs_dir):
    spec = load_data_spec(write_spec(tmp_path, VALID))
    assert [code_filters_on(s) for s in spec.sources] == [False, False]
    spec.sources[0].kind = "code"
    spec.sources[1].code_filters = True
    assert [code_filters_on(s) for s in spec.sources] == [True, True]
    spec.sources[0].code_filters = False
    assert not code_filters_on(spec.sources[0])


def test_tokenizer_path_resolves_and_must_exist(tmp_path, docs_dir):
    (tmp_path / "tok.json").write_text("{}")
    spec = load_data_spec(write_spec(tmp_path, VALID + "    tokenizer: {path: tok.json}\n"))
    assert spec.tokenizer.path == str(tmp_path / "tok.json")
    path = write_spec(tmp_path, VALID + "    tokenizer: {path: missing.json}\n")
    with pytest.raises(ConfigError, match=rf"{path}: tokenizer\.path: no such file '.*missing\.json'"):
        load_data_spec(path)
