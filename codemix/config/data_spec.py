"""The data YAML: which sources make a corpus, how each is read, and how it is tokenized.

Every check that can fail on bad input runs in `load_data_spec`, before any file is read, and its
error names the bad value and the YAML file it came from."""

import glob
import logging
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from codemix.config.loading import load_typed
from codemix.errors import ConfigError

log = logging.getLogger(__name__)

READER_TYPES = ("dir", "files", "jsonl", "parquet", "hf_disk", "command")
NEAR_DEDUP_METHODS = ("minhash",)
# The study's source kinds, by the token column they count in (PAPER.md, Table 2): markup-style code
# is code (code -> text's "200B code" is 80% web code + 20% markup), and the cooldown's high-quality
# text, math and instruction-style data are text (its "32B text + 8B code"). Other kinds are allowed.
STUDY_TEXT_KINDS = ("text", "hq", "math", "instruct")
STUDY_CODE_KINDS = ("code", "markup", "code_adjacent", "synthetic")
STUDY_KINDS = STUDY_TEXT_KINDS + STUDY_CODE_KINDS
# Kinds and names become mixture keys and directory names: plain identifiers only.
IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# A byte-level BPE needs the 256 byte symbols plus the special tokens before it can merge anything.
MIN_VOCAB_SIZE = 512



def _python_stdlib() -> str:
    return sysconfig.get_paths()["stdlib"]


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


OmegaConf.register_resolver("python_stdlib", _python_stdlib, replace=True)
OmegaConf.register_resolver("python_version", _python_version, replace=True)


@dataclass
class ReaderSpec:
    type: str = MISSING
    path: str | None = None
    paths: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=lambda: ["**/*"])
    exclude: list[str] = field(default_factory=list)
    text_field: str = "text"
    split_on: str | None = None
    command: list[str] = field(default_factory=list)
    min_chars: int = 1


@dataclass
class SourceSpec:
    name: str = MISSING
    kind: str = MISSING
    licence: str = MISSING
    provenance: str = ""
    reader: ReaderSpec = field(default_factory=ReaderSpec)
    max_bytes: int | None = None
    code_filters: bool | None = None
    optional: bool = False
    # "minhash": drop this source's near-duplicates of the documents of every source that sets it
    # (the earliest source in the YAML keeps a text), found with DataSpec.minhash's settings
    near_dedup: str | None = None


@dataclass
class TokenizerSpec:
    path: str | None = None
    vocab_size: int = 8192
    sample_bytes_per_source: int = 1_000_000
    min_frequency: int = 2


@dataclass
class MinhashSpec:
    """MinHash near-duplicate detection (datatrove's, as The Stack was de-duplicated): word n-grams of
    the normalised text, `buckets` bands of `hashes_per_bucket` hashes; two documents pair when one band
    agrees, likely above a Jaccard similarity of about (1 / buckets) ** (1 / hashes_per_bucket), 0.72
    with the defaults."""

    n_grams: int = 5
    buckets: int = 14
    hashes_per_bucket: int = 8
    seed: int = 1


@dataclass
class DataSpec:
    name: str = MISSING
    sources: list[SourceSpec] = field(default_factory=list)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    seq_len: int = 512
    val_fraction: float = 0.02
    seed: int = 0
    dedup: bool = True
    minhash: MinhashSpec = field(default_factory=MinhashSpec)  # for the sources with near_dedup: minhash
    # The build cuts an uncapped source into one task per this many bytes of input files (the
    # slices decide the packing, so the output depends on this, not on the number of workers).
    task_bytes: int = 64 << 20


def code_filters_on(source: SourceSpec) -> bool:
    """Whether the study's code filters apply: as the YAML says, else only to kind `code`."""
    return source.kind == "code" if source.code_filters is None else source.code_filters


def quickstart_spec_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "quickstart.yaml"


@dataclass
class SourceList:
    """A YAML of sources to add to a built corpus (`codemix data add`): sources only, because the
    corpus already fixes the tokenizer and the packing."""

    sources: list[SourceSpec] = field(default_factory=list)


def load_data_spec(path: str | Path, overrides: list[str] | None = None) -> DataSpec:
    """Load and validate a data YAML. Relative paths (overrides' too) resolve against the YAML's
    directory; ``~`` is expanded.

    An `optional` source whose input is missing is dropped with a warning, so the returned spec
    lists exactly the sources a build will read (their index is their source_id)."""
    path = Path(path)
    spec = load_typed(DataSpec, path, overrides)
    origin = str(path)
    base = path.resolve().parent
    _check_top_level(spec, origin)
    if spec.tokenizer.path is not None:
        spec.tokenizer.path = _resolve(spec.tokenizer.path, base)
        if not Path(spec.tokenizer.path).is_file():
            raise ConfigError(f"{origin}: tokenizer.path: no such file {spec.tokenizer.path!r}")
    spec.sources = checked_sources(spec.sources, origin, base)
    return spec


def load_source_list(path: str | Path) -> list[SourceSpec]:
    """Load and validate a YAML with only `sources:` (same rules as a data YAML's sources)."""
    path = Path(path)
    listed = load_typed(SourceList, path)
    if not listed.sources:
        raise ConfigError(f"{path}: sources: at least one source is needed")
    return checked_sources(listed.sources, str(path), path.resolve().parent)


def checked_sources(sources: list[SourceSpec], origin: str, base: Path) -> list[SourceSpec]:
    """Resolve reader paths against `base`, validate every source, drop optional ones whose input
    is missing. `origin` names where the sources came from in errors."""
    for source in sources:
        _resolve_paths(source.reader, base)
        check_source_spec(source, origin)
    _check_unique_names(sources, origin)
    available = [s for s in sources if _available(s, origin)]
    if not available:
        raise ConfigError(f"{origin}: no source has its input on this machine")
    return available


def _check_top_level(spec: DataSpec, origin: str) -> None:
    if not NAME.fullmatch(spec.name):
        raise ConfigError(f"{origin}: name {spec.name!r}: use letters, digits, '_', '-', '.'")
    if not spec.sources:
        raise ConfigError(f"{origin}: sources: at least one source is needed")
    if spec.seq_len < 2:
        raise ConfigError(f"{origin}: seq_len {spec.seq_len}: must be at least 2")
    if spec.task_bytes < 1:
        raise ConfigError(f"{origin}: task_bytes {spec.task_bytes}: must be at least 1")
    if not 0.0 <= spec.val_fraction < 1.0:
        raise ConfigError(f"{origin}: val_fraction {spec.val_fraction}: must be in [0, 1)")
    tok = spec.tokenizer
    if tok.vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError(f"{origin}: tokenizer.vocab_size {tok.vocab_size}: must be at least {MIN_VOCAB_SIZE}")
    if tok.sample_bytes_per_source < 1:
        raise ConfigError(f"{origin}: tokenizer.sample_bytes_per_source {tok.sample_bytes_per_source}: must be positive")
    if tok.min_frequency < 1:
        raise ConfigError(f"{origin}: tokenizer.min_frequency {tok.min_frequency}: must be at least 1")
    for key in ("n_grams", "buckets", "hashes_per_bucket"):
        if getattr(spec.minhash, key) < 1:
            raise ConfigError(f"{origin}: minhash.{key} {getattr(spec.minhash, key)}: must be at least 1")


def _check_unique_names(sources: list[SourceSpec], origin: str) -> None:
    seen: set[str] = set()
    kinds = {s.kind for s in sources}
    for source in sources:
        if source.name in seen:
            raise ConfigError(f"{origin}: source name {source.name!r} appears twice")
        seen.add(source.name)
        # A mixture key must mean one thing: a source name that is also a kind would be ambiguous.
        if source.name in kinds:
            raise ConfigError(f"{origin}: source name {source.name!r} is also a kind; rename the source")


def check_source_spec(source: SourceSpec, origin: str) -> None:
    where = f"{origin}: source {source.name!r}"
    if not NAME.fullmatch(source.name):
        raise ConfigError(f"{where}: name: use letters, digits, '_', '-', '.'")
    if not IDENTIFIER.fullmatch(source.kind):
        raise ConfigError(
            f"{where}: kind {source.kind!r} is not an identifier (lower-case letters, digits, '_'); "
            f"the study's kinds are {', '.join(STUDY_KINDS)}"
        )
    if source.max_bytes is not None and source.max_bytes < 1:
        raise ConfigError(f"{where}: max_bytes {source.max_bytes}: must be positive")
    if source.near_dedup is not None and source.near_dedup not in NEAR_DEDUP_METHODS:
        raise ConfigError(f"{where}: near_dedup {source.near_dedup!r}: expected {' or '.join(map(repr, NEAR_DEDUP_METHODS))} "
                          "(or leave it out)")
    reader = source.reader
    if reader.type not in READER_TYPES:
        raise ConfigError(f"{where}: reader.type {reader.type!r}: expected one of {', '.join(READER_TYPES)}")
    if reader.type == "files" and not (reader.paths or reader.path):
        raise ConfigError(f"{where}: reader type 'files' needs 'paths' (or a 'path' glob)")
    if reader.type == "command" and not reader.command:
        raise ConfigError(f"{where}: reader type 'command' needs 'command' (program and arguments)")
    if reader.type in ("dir", "jsonl", "parquet", "hf_disk") and not reader.path:
        raise ConfigError(f"{where}: reader type {reader.type!r} needs 'path'")
    if reader.min_chars < 0:
        raise ConfigError(f"{where}: reader.min_chars {reader.min_chars}: must not be negative")
    if reader.split_on is not None:
        try:
            re.compile(reader.split_on)
        except re.error as err:
            raise ConfigError(f"{where}: reader.split_on {reader.split_on!r}: not a regular expression: {err}") from err


def _resolve_paths(reader: ReaderSpec, base: Path) -> None:
    if reader.path is not None:
        reader.path = _resolve(reader.path, base)
    reader.paths = [_resolve(p, base) for p in reader.paths]


def _resolve(path: str, base: Path) -> str:
    return str(base / Path(path).expanduser())


def input_patterns(reader: ReaderSpec) -> list[str]:
    """The path patterns (globs allowed) a file-based reader reads; empty for `command`."""
    if reader.type == "command":
        return []
    return list(reader.paths) + ([reader.path] if reader.path else [])


def _available(source: SourceSpec, origin: str) -> bool:
    missing = _missing_input(source.reader)
    if missing is None:
        return True
    if source.optional:
        log.warning("%s: optional source %r skipped: %s", origin, source.name, missing)
        return False
    raise ConfigError(f"{origin}: source {source.name!r}: {missing}")


def _missing_input(reader: ReaderSpec) -> str | None:
    if reader.type == "command":
        program = reader.command[0]
        return None if shutil.which(program) else f"program {program!r} not found on PATH"
    for pattern in input_patterns(reader):
        if not glob.glob(pattern, recursive=True):
            return f"no such path {pattern!r}"
    return None
