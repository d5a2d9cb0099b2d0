"""Readers: turn one source of a data YAML into a lazy, deterministic stream of documents.

Files are visited in the order of a hash of their relative path, and the parts of a split file in
the order of a hash of their origin, so a byte cap applied by the consumer samples across the whole
tree instead of taking its alphabetically first package (or a dictionary's letter A)."""

import bz2
import glob
import gzip
import io
import json
import logging
import lzma
import os
import re
import shlex
import subprocess
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import xxhash

from codemix.config.data_spec import ReaderSpec, SourceSpec, input_patterns
from codemix.errors import CodemixError, ConfigError

log = logging.getLogger(__name__)

# A file with a NUL byte near its start is binary (git's heuristic looks at the first 8000 bytes).
BINARY_PROBE_BYTES = 8192
PARQUET_BATCH_ROWS = 1024

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".java": "java", ".js": "javascript",
    ".mjs": "javascript", ".ts": "typescript", ".sh": "shell", ".bash": "shell", ".rb": "ruby",
    ".pl": "perl", ".lua": "lua", ".sql": "sql", ".s": "assembly", ".rst": "rst", ".md": "markdown",
    ".html": "html", ".htm": "html", ".css": "css", ".xml": "xml", ".json": "json", ".yaml": "yaml",
    ".yml": "yaml", ".toml": "toml", ".tex": "tex",
}
DECOMPRESSORS = {".gz": gzip.open, ".dz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
ZSTD_SUFFIX = ".zst"
# Lone surrogates: what surrogateescape makes of bytes that are not UTF-8 (see _decode).
_UNDECODABLE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Document:
    text: str
    origin: str  # file path, + "#<n>" for the n-th record or part of it
    language: str | None


@dataclass
class ReadStats:
    files: int = 0
    documents: int = 0
    bytes: int = 0
    skipped_binary: int = 0
    skipped_non_utf8: int = 0
    skipped_unreadable: int = 0  # compressed files that do not decompress (corrupt or truncated)
    capped: bool = False  # reading stopped at the source's byte cap


# Readers whose input is not a list of files read one by one: a source of these is one build task.
UNSLICEABLE_READERS = ("command", "hf_disk")


@dataclass(frozen=True)
class Slice:
    """Part `index` of `count` of a source's files (every count-th file in hash order): one build task's input."""

    index: int = 0
    count: int = 1


WHOLE = Slice()


def read_source(spec: SourceSpec, stats: ReadStats, part: Slice = WHOLE, files: list[Path] | None = None
                ) -> Iterator[Document]:
    """Yield the documents of `part` of the source's files lazily; `stats` is updated as they are read.
    `files`: the part's files, when they were listed already (`slice_files`: a build lists every source
    once, not once per task), instead of listing the source's files here."""
    reader = spec.reader
    records = _RECORD_READERS[reader.type](spec, stats, slice_files(spec, part) if files is None else files)
    split = re.compile(reader.split_on) if reader.split_on is not None else None
    for text, origin, language in records:
        for part, part_origin in [(text, origin)] if split is None else _split(text, origin, split):
            if len(part) < reader.min_chars:
                continue
            if _UNDECODABLE.search(part):
                stats.skipped_non_utf8 += 1
                continue
            stats.documents += 1
            stats.bytes += len(part.encode("utf-8"))
            yield Document(part, part_origin, language)


def check_readable(spec: SourceSpec, stats: ReadStats, origin: str = "") -> None:
    """Refuse a source whose files held no text at all (only binary, non-UTF-8 or unreadable ones):
    building it would give it 0 tokens and say nothing. `origin`: the data YAML, named first if given."""
    if stats.documents == 0 and (stats.skipped_binary or stats.skipped_non_utf8 or stats.skipped_unreadable):
        reader = spec.reader
        where = ", ".join(input_patterns(reader)) if reader.type != "command" else shlex.join(reader.command)
        unreadable = f", {stats.skipped_unreadable} unreadable" if stats.skipped_unreadable else ""
        raise ConfigError(f"{origin + ': ' if origin else ''}source {spec.name!r}: {where}: no UTF-8 text in "
                          f"{stats.files} file(s) ({stats.skipped_binary} binary, {stats.skipped_non_utf8} not UTF-8"
                          f"{unreadable})")


def language_of(path: str | Path) -> str | None:
    """The language a file's extension names, looking through a compression suffix and the .txt
    that documentation builds append (``x.rst.txt``)."""
    name = Path(path).name.lower()
    suffixes = Path(name).suffixes
    if suffixes and (suffixes[-1] in DECOMPRESSORS or suffixes[-1] == ZSTD_SUFFIX):
        suffixes = suffixes[:-1]
    if len(suffixes) >= 2 and suffixes[-1] == ".txt":
        suffixes = suffixes[:-1]
    return LANGUAGES.get(suffixes[-1]) if suffixes else None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``**/`` spans any number of directories, ``*`` and ``?`` stay inside
    one path component (fnmatch lets ``*`` cross ``/``; PurePath.match has no ``**`` before 3.13)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            body = "^" + body[1:] if body.startswith("!") else body.replace("^", "\\^", 1)
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _split(text: str, origin: str, separator: re.Pattern[str]) -> list[tuple[str, str]]:
    parts, start = [], 0
    for match in separator.finditer(text):
        parts.append(text[start : match.start()])
        start = match.end()
    parts.append(text[start:])
    kept = [(p.strip(), f"{origin}#{n}") for n, p in enumerate(parts)]
    return sorted([(p, o) for p, o in kept if p], key=lambda item: xxhash.xxh64_intdigest(item[1]))


def _hash_order(keyed: Iterable[tuple[str, Path]]) -> list[tuple[str, Path]]:
    return sorted(keyed, key=lambda item: (xxhash.xxh64_intdigest(item[0]), str(item[1])))


class _Selector:
    """A reader's include/exclude globs, matched against paths relative to the reader's root."""

    def __init__(self, reader: ReaderSpec) -> None:
        self._include = [glob_regex(p) for p in reader.include]
        self._exclude = [glob_regex(p) for p in reader.exclude]
        # Everything under a directory that matches "<pattern>/**" is excluded: skip walking it.
        self._excluded_dirs = [glob_regex(p.removesuffix("/**")) for p in reader.exclude if p.endswith("/**")]

    def wants(self, key: str) -> bool:
        return any(p.fullmatch(key) for p in self._include) and not any(p.fullmatch(key) for p in self._exclude)

    def prunes(self, dir_key: str) -> bool:
        return any(p.fullmatch(dir_key) for p in self._excluded_dirs)


def _glob_base(pattern: str) -> Path:
    """The directory part of a pattern before its first wildcard: paths are keyed relative to it."""
    parts = Path(pattern).parts
    for n, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:n])
    return Path(pattern).parent


def source_files(spec: SourceSpec) -> list[tuple[str, Path]]:
    """(relative key, path) of every file the reader selects, in hash order."""
    reader = spec.reader
    selector = _Selector(reader)
    keyed: list[tuple[str, Path]] = []
    for pattern in input_patterns(reader):
        matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
        if reader.type == "dir":
            for root in matches:
                if not root.is_dir():
                    raise ConfigError(f"source {spec.name!r}: reader type 'dir': {root} is not a directory")
                keyed.extend(_walk(root, selector))
            continue
        files = [m for m in matches if m.is_file()]
        if not files:
            raise ConfigError(f"source {spec.name!r}: {pattern!r} matches no file")
        keyed.extend(
            (key, f) for f in files if selector.wants(key := f.relative_to(_glob_base(pattern)).as_posix())
        )
    return _hash_order(keyed)


def _walk(root: Path, selector: _Selector) -> Iterator[tuple[str, Path]]:
    for folder, dirs, names in os.walk(root):
        prefix = os.path.relpath(folder, root).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        dirs[:] = [d for d in dirs if not selector.prunes(prefix + d)]
        for name in names:
            key = prefix + name
            if selector.wants(key) and os.path.isfile(path := os.path.join(folder, name)):
                yield key, Path(path)


def _open(path: Path) -> BinaryIO:
    suffix = path.suffix.lower()
    if suffix in DECOMPRESSORS:
        return DECOMPRESSORS[suffix](path, "rb")
    if suffix == ZSTD_SUFFIX:
        import zstandard

        # Files written in parallel hold several frames; zstandard's reader cannot iterate lines, a
        # buffered wrapper can (jsonl.zst).
        reader = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True)
        return io.BufferedReader(reader)
    return open(path, "rb")


def _corrupt_errors(path: Path) -> tuple[type[Exception], ...]:
    """What decompressing `path` raises when its data is corrupt or truncated (nothing for a plain file:
    its read errors are not the data's)."""
    suffix = path.suffix.lower()
    if suffix == ZSTD_SUFFIX:
        import zstandard

        return (zstandard.ZstdError, OSError, EOFError)
    return (OSError, EOFError, zlib.error, lzma.LZMAError) if suffix in DECOMPRESSORS else ()


def _skip_unreadable(path: Path, err: Exception, stats: ReadStats) -> None:
    # counted like a binary file (the manifest's skipped.unreadable) and named, since it is a damaged input
    stats.skipped_unreadable += 1
    log.warning("%s: skipped, unreadable: %s", path, err)


def _read_bytes(path: Path, stats: ReadStats) -> bytes | None:
    """The file's content, or None (counted) for a compressed file that does not decompress."""
    try:
        with _open(path) as handle:
            return handle.read()
    except _corrupt_errors(path) as err:
        _skip_unreadable(path, err, stats)
        return None


def _read_lines(path: Path, stats: ReadStats) -> Iterator[bytes]:
    """The file's lines; a compressed file found corrupt part-way ends there, counted (its lines before stay)."""
    try:
        with _open(path) as handle:
            yield from handle
    except _corrupt_errors(path) as err:
        _skip_unreadable(path, err, stats)


def _decode(raw: bytes, stats: ReadStats, split: bool = False) -> str | None:
    """UTF-8 text, or None (counted) for binary or non-UTF-8 content.

    Content that will be split into documents is decoded leniently (invalid bytes become lone
    surrogates) so that only the documents holding invalid bytes are skipped: three stray cp1252
    bytes must not cost a 40 MB dictionary."""
    if b"\x00" in raw[:BINARY_PROBE_BYTES]:
        stats.skipped_binary += 1
        return None
    try:
        text = raw.decode("utf-8", "surrogateescape" if split else "strict")
    except UnicodeDecodeError:
        stats.skipped_non_utf8 += 1
        return None
    return text.removeprefix("\ufeff")


Record = tuple[str, str, str | None]  # text, origin, language


def slice_files(spec: SourceSpec, part: Slice = WHOLE) -> list[Path]:
    """The files of `part` of the source (none for the readers that read no list of files)."""
    if spec.reader.type in UNSLICEABLE_READERS:
        return []
    return [path for _key, path in source_files(spec)[part.index :: part.count]]


def _read_files(spec: SourceSpec, stats: ReadStats, files: list[Path]) -> Iterator[Record]:
    for path in files:
        stats.files += 1
        raw = _read_bytes(path, stats)
        text = None if raw is None else _decode(raw, stats, split=spec.reader.split_on is not None)
        if text is not None:
            yield text, str(path), language_of(path)


def _read_jsonl(spec: SourceSpec, stats: ReadStats, files: list[Path]) -> Iterator[Record]:
    field = spec.reader.text_field
    for path in files:
        stats.files += 1
        for n, line in enumerate(_read_lines(path, stats)):
            if not line.strip():
                continue
            where = f"source {spec.name!r}: {path} line {n + 1}"
            text = _decode(line, stats)
            if text is None:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{where}: not JSON: {err}") from err
            if not isinstance(record, dict) or field not in record:
                raise ConfigError(f"{where}: no text_field {field!r} in the record")
            value = _text_value(record[field], field, where, stats)
            if value is not None:
                yield value, f"{path}#{n}", None


def _read_parquet(spec: SourceSpec, stats: ReadStats, files: list[Path]) -> Iterator[Record]:
    import pyarrow.parquet as pq

    field = spec.reader.text_field
    for path in files:
        stats.files += 1
        parquet = pq.ParquetFile(path)
        _require_column(parquet.schema_arrow.names, field, spec, path)
        n = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[field]):
            for value in batch.column(0).to_pylist():
                text = _text_value(value, field, f"source {spec.name!r}: {path} row {n}", stats)
                if text is not None:
                    yield text, f"{path}#{n}", None
                n += 1


def _read_hf_disk(spec: SourceSpec, stats: ReadStats, files: list[Path]) -> Iterator[Record]:
    """A `datasets.save_to_disk` folder: Arrow IPC *stream* files listed in state.json."""
    import pyarrow as pa

    field = spec.reader.text_field
    for folder in sorted(glob.glob(spec.reader.path or "")):
        n = 0
        for path in _arrow_files(Path(folder), spec):
            stats.files += 1
            with pa.memory_map(str(path)) as source:
                stream = pa.ipc.open_stream(source)
                _require_column(stream.schema.names, field, spec, path)
                for batch in stream:
                    for value in batch.column(field).to_pylist():
                        text = _text_value(value, field, f"source {spec.name!r}: {path} row {n}", stats)
                        if text is not None:
                            yield text, f"{path}#{n}", None
                        n += 1


def _arrow_files(folder: Path, spec: SourceSpec) -> list[Path]:
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        raise ConfigError(
            f"source {spec.name!r}: {folder} holds a DatasetDict with splits {splits}; "
            f"point reader.path at one split, e.g. {folder / splits[0]}"
        )
    state = folder / "state.json"
    if not state.is_file():
        raise ConfigError(f"source {spec.name!r}: {folder} has no state.json: not a save_to_disk folder")
    return [folder / entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]


def _read_command(spec: SourceSpec, stats: ReadStats, files: list[Path]) -> Iterator[Record]:
    command = spec.reader.command
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as err:
        raise ConfigError(f"source {spec.name!r}: cannot run {shlex.join(command)!r}: {err}") from err
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-500:]
        raise CodemixError(f"source {spec.name!r}: {shlex.join(command)!r} exited {done.returncode}: {tail}")
    stats.files += 1
    text = _decode(done.stdout, stats, split=spec.reader.split_on is not None)
    if text is not None:
        yield text, f"command:{shlex.join(command)}", None


def _require_column(names: list[str], field: str, spec: SourceSpec, path: Path) -> None:
    if field not in names:
        raise ConfigError(f"source {spec.name!r}: {path}: no text_field {field!r}; columns are {names}")


def _text_value(value: object, field: str, where: str, stats: ReadStats) -> str | None:
    """A record's text; None for a null value or one holding NUL bytes (counted as binary)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: text_field {field!r} holds {type(value).__name__}, not a string")
    if "\x00" in value[:BINARY_PROBE_BYTES]:
        stats.skipped_binary += 1
        return None
    return value


_RECORD_READERS = {
    "dir": _read_files,
    "files": _read_files,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "hf_disk": _read_hf_disk,
    "command": _read_command,
}
