"""`codemix data build`: a data spec -> tokenizer.json, MDS shards and a manifest per source, corpus.json.

The tokenizer is trained first, in this process, from a sample of every source. The sources are then
built as independent tasks over slices of their files, run by datatrove's executor with N worker
processes (codemix.data.tasks: read, clean, tokenize and hash once; decide duplicates per hash bucket; pack);
a task killed half-way is re-run on the next build, a finished one is not. Last, each source's parts
are merged here into `<source>.tmp-<pid>` (shard indexes by streaming's merge_index) and renamed into
place only after its manifest.json is in it, and corpus.json is removed before anything changes and
written last, so a killed build never leaves a source or a corpus that looks complete. A re-run keeps
every source whose manifest records the same spec hash and tokenizer hash, and rebuilds the rest.
A build holds the folder's `.codemix-build.lock` (flock) from its start, so a second build of it is refused
before it spends anything.

The spec hash of a source covers its own spec, the corpus settings (seq_len, split, seed, dedup), the
tokenizer's recipe and, with dedup on, every source before it (they decide which of its documents
are duplicates). It covers the spec, not the bytes of the input files.

`codemix data add` (`add_sources`) puts further sources, e.g. a synthetic one, into a built corpus
with its tokenizer, so the stages already trained on it stay valid."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from tokenizers import Tokenizer

from codemix.atomic import replace_dir, write_json_atomic
from codemix.config.data_spec import DataSpec, SourceSpec, TokenizerSpec, code_filters_on
from codemix.data import hash_store
from codemix.data.clean import Cleaner
from codemix.data.corpus import CORPUS_FILE, MANIFEST_FILE, SPLITS, TOKENIZER_FILE, Corpus, read_json
from codemix.data.shards import EncodeSettings
from codemix.data.sources import ReadStats, check_readable, read_source
from codemix.data.executors import Executor, LocalExecutor
from codemix.data.tasks import (
    COUNTS_FILE,
    BuildPlan,
    Task,
    plan_slices,
    remove_task_data,
    write_plan_note,
    write_slice_files,
)
from codemix.data.tokenizer import (
    file_hash,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    token_dtype,
    train_bpe,
    vocab_size,
)
from codemix.errors import CodemixError, ConfigError
from codemix.leftovers import writer_alive
from codemix.paths import is_url

# Bump when the on-disk format changes, so every older source is rebuilt (2: the val hold-out).
FORMAT_VERSION = 2
_TMP_NAME = re.compile(r"\.tmp-(\d+)")
# Held (flock) by the build writing the folder, for its whole run; holds that build's pid and host.
LOCK_FILE = ".codemix-build.lock"  # not .build*, which names the work folders

Progress = Callable[[str], None]


@dataclass
class _Kept:
    """What the build kept of one source (after cleaning and the max_bytes cap)."""

    documents: int = 0
    bytes: int = 0
    capped: bool = False


def build_corpus(
    spec: DataSpec,
    out_dir: str | os.PathLike,
    processes: int = 2,
    command: str = "",
    progress: Progress = print,
    executor: Executor | None = None,
    origin: str = "",
) -> Path:
    """Build (or finish, or update) the corpus described by `spec` in `out_dir`; returns out_dir.
    The tasks run `processes` at a time here, or on `executor` (a SlurmExecutor submits them and a
    last job finishes the corpus). Sources added later with `add_sources` stay listed while the
    tokenizer stays the same. `origin`: the data YAML, for errors."""
    if is_url(out_dir):
        raise ConfigError(f"out folder {str(out_dir)!r} is a URL: a corpus is built into a local or shared file-system "
                          f"folder; build it there, upload that folder to {out_dir} and give {out_dir} where a "
                          "corpus is expected")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _build_lock(out):
        _build_corpus(spec, out, processes, command, progress, executor, origin)
    return out


def _build_corpus(spec: DataSpec, out: Path, processes: int, command: str, progress: Progress,
                  executor: Executor | None, origin: str) -> None:
    _remove_stale_tmp(out, progress)
    previous = _previous_manifests(out, spec.sources)
    added_before = _added_entries(out)
    _say_seq_len_change(previous, spec, progress)
    tokenizer_recipe = _hash(_tokenizer_recipe(spec))
    invalidate = _Invalidator(out / CORPUS_FILE)

    tokenizer_hash = _reusable_tokenizer_hash(out / TOKENIZER_FILE, previous, tokenizer_recipe)
    if tokenizer_hash is None:
        invalidate()
        started = time.perf_counter()
        tokenizer_hash = save_tokenizer(_make_tokenizer(spec), out / TOKENIZER_FILE)
        progress(f"tokenizer {tokenizer_hash}: ready in {time.perf_counter() - started:.1f} s")
    else:
        progress(f"tokenizer {tokenizer_hash}: up to date")
    def write_meta() -> None:
        own = {s.name for s in spec.sources}
        still_added = []
        for entry in (entry for entry in added_before if entry["name"] not in own):
            if _manifest_tokenizer(out / entry["name"]) == tokenizer_hash:
                still_added.append(entry)
            else:
                progress(f"{entry['name']}: added with another tokenizer, no longer listed; `codemix data add` it again")
        _write_corpus_meta(out, spec, tokenizer_hash, [_entry(s) for s in spec.sources] + still_added, command)

    _build_sources(spec, out, previous, tokenizer_recipe, tokenizer_hash, invalidate, executor or LocalExecutor(processes),
                   command, progress, write_meta, origin)


def add_sources(
    corpus_dir: str | os.PathLike,
    sources: list[SourceSpec],
    processes: int = 2,
    command: str = "",
    progress: Progress = print,
    origin: str = "",
) -> Path:
    """Add `sources` to a built corpus, tokenized with its tokenizer and packed with its settings, so
    the tokenizer, and with it every stage trained on the corpus, stays the same. Source ids of the
    corpus's sources do not change: new sources come after them. Adding a source again rebuilds it
    only if its spec changed. Duplicates are removed among the added sources, not against the
    corpus's own (their raw texts are not kept). `origin`: the sources' YAML, for errors."""
    out = Path(corpus_dir)
    corpus = Corpus.open(out)
    check_addable(corpus, sources)
    with _build_lock(out):
        _add_sources(corpus, sources, processes, command, progress, origin)
    return out


def _add_sources(corpus: Corpus, sources: list[SourceSpec], processes: int, command: str, progress: Progress,
                 origin: str) -> None:
    out = corpus.path
    _remove_stale_tmp(out, progress)
    spec = DataSpec(name=corpus.name, sources=sources, tokenizer=TokenizerSpec(path=str(out / TOKENIZER_FILE)),
                    seq_len=corpus.seq_len, val_fraction=corpus.meta["val_fraction"], seed=corpus.meta["seed"])
    tokenizer_recipe = _hash(_tokenizer_recipe(spec))
    def write_meta() -> None:
        new = {s.name: {**_entry(s), "added": True} for s in sources}
        entries = [new.pop(entry["name"], entry) for entry in corpus.meta["sources"]] + list(new.values())
        _write_corpus_meta(out, corpus.meta, corpus.tokenizer_hash, entries, corpus.meta.get("build_command", ""))

    # The corpus stays complete while sources are added: each appears whole, corpus.json last.
    _build_sources(spec, out, _previous_manifests(out, sources), tokenizer_recipe, corpus.tokenizer_hash,
                   lambda: None, LocalExecutor(processes), command, progress, write_meta, origin, keep_hashes=False)


def check_addable(corpus: Corpus, sources: list[SourceSpec]) -> None:
    """Refuse, before any work, sources that `add_sources` cannot put into `corpus`."""
    where = f"corpus {corpus.path}"
    for key in ("seed", "val_fraction"):
        if key not in corpus.meta:
            raise ConfigError(f"{corpus.path / CORPUS_FILE}: no '{key}' (built by an older codemix); run `codemix data "
                              "build` on its data YAML again first (it keeps the sources and rewrites corpus.json)")
    added = {entry["name"] for entry in corpus.meta["sources"] if entry.get("added")}
    kinds = {s.kind for s in corpus.sources} | {s.kind for s in sources}
    for source in sources:
        if source.name in corpus.source_names and source.name not in added:
            raise ConfigError(f"{where}: already has a source named {source.name!r} from its own data YAML")
        if source.name in kinds:
            raise ConfigError(f"{where}: source name {source.name!r} is also a kind there; rename the source")


def _build_sources(spec: DataSpec, out: Path, previous: dict[str, dict], tokenizer_recipe: str, tokenizer_hash: str,
                   invalidate: Callable[[], None], executor: Executor, command: str,
                   progress: Progress, write_meta: Callable[[], None], origin: str, keep_hashes: bool = True) -> None:
    """Build every source of `spec` whose manifest does not record its spec and tokenizer hashes, as
    tasks over slices of their files (codemix.data.tasks) on `executor`; then merge each source's
    parts and `write_meta` (here, or in the executor's last job). With dedup, the scanned sources'
    hashes are kept for the next build (codemix.data.hash_store) when `keep_hashes`."""
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    dtype = token_dtype(vocab_size(tokenizer))
    settings = EncodeSettings(str(out / TOKENIZER_FILE), special_ids(tokenizer)["eos_id"], dtype, spec.seed,
                              spec.val_fraction)
    expected = {source.name: _spec_hash(spec, i, tokenizer_recipe) for i, source in enumerate(spec.sources)}
    todo = []
    for i, source in enumerate(spec.sources):
        manifest = previous.get(source.name)
        if manifest and manifest.get("spec_hash") == expected[source.name] and manifest.get("tokenizer_hash") == tokenizer_hash:
            progress(f"{source.name}: up to date")
            continue
        if manifest:
            progress(f"{source.name}: built from another spec or tokenizer, rebuilding")
        todo.append(i)
    # with dedup, every source before the last rebuilt one decides which of its documents are duplicates
    scanned = (list(range(max(todo) + 1)) if spec.dedup or _near(spec) else todo) if todo else []
    tasks, files = plan_slices(spec, scanned)
    _check_text_up_front(spec, [task for task in tasks if task.source in todo], files, origin)
    if todo:
        invalidate()
    tasks = tuple(tasks)
    work = out / f".build-{_hash({'sources': [expected[spec.sources[i].name] for i in todo], 'tasks': repr(tasks), 'tokenizer': tokenizer_hash})}"
    for stale in out.glob(".build-*"):  # an earlier plan's work folder (builds write only under their own)
        if stale != work or not todo:
            shutil.rmtree(stale)
    if not todo:
        write_meta()
        return
    plan = BuildPlan(spec, str(work), tasks, frozenset(todo), settings)
    write_plan_note(plan)
    write_slice_files(plan, files)
    keys = {i: hash_store.store_key(spec, i, list(tasks), files) for i in scanned} if keep_hashes and spec.dedup else {}
    for i in scanned:
        if i not in todo and hash_store.link_kept(out, plan, i, keys.get(i)):
            progress(f"{spec.sources[i].name}: dedup against its kept hashes, its text is not read again")
    started = time.time()

    def finish() -> None:
        for i in todo:
            hashes = {"spec_hash": expected[spec.sources[i].name], "tokenizer_recipe": tokenizer_recipe,
                      "tokenizer_hash": tokenizer_hash}
            progress(_summary(_merge_source(plan, i, out, hashes, command, time.time() - started)))
        if keys:
            hash_store.keep(out, plan, keys)
        write_meta()
        remove_task_data(plan)  # the parts live on as the sources' hard links; logs and markers stay

    executor.run(plan, finish, progress)


def _entry(source: SourceSpec) -> dict:
    return {"name": source.name, "kind": source.kind, "licence": source.licence}


def _write_corpus_meta(out: Path, spec: DataSpec | dict, tokenizer_hash: str, sources: list[dict], command: str) -> None:
    """corpus.json, written last: its presence marks the corpus complete. `spec` gives name, seq_len,
    seed and val_fraction (a DataSpec, or the corpus.json being rewritten)."""
    settings = spec if isinstance(spec, dict) else asdict(spec)
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER_FILE))
    write_json_atomic(
        out / CORPUS_FILE,
        {
            "name": settings["name"],
            "tokenizer_hash": tokenizer_hash,
            "seq_len": settings["seq_len"],
            "seed": settings["seed"],
            "val_fraction": settings["val_fraction"],
            "vocab_size": vocab_size(tokenizer),
            **special_ids(tokenizer),
            "token_dtype": token_dtype(vocab_size(tokenizer)),
            "sources": sources,
            "build_command": command,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _merge_source(plan: BuildPlan, index: int, out: Path, hashes: dict[str, str], command: str, seconds: float) -> dict:
    """Put one source's packed parts together in a tmp dir (hard links: the parts stay for a resumed
    build), merge their shard indexes, write the manifest last, then rename the dir into place.
    `hashes`: spec_hash, tokenizer_recipe, tokenizer_hash, for the next build's up-to-date check."""
    from streaming.base.util import merge_index

    source = plan.spec.sources[index]
    tmp = out / f"{source.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    parts = [plan.part_dir(task) for task in plan.tasks if task.source == index]
    counts = [read_json(part / COUNTS_FILE) for part in parts]
    for split in SPLITS:
        for part in parts:
            shutil.copytree(part / split, tmp / split / part.name, copy_function=os.link)
        merge_index([str(tmp / split / part.name / "index.json") for part in parts], str(tmp / split))
    stats = ReadStats(**{key: sum(c["read"][key] for c in counts) for key in ("files", "documents", "bytes")},
                      skipped_binary=sum(c["skipped"]["binary"] for c in counts),
                      skipped_non_utf8=sum(c["skipped"]["non_utf8"] for c in counts),
                      # parts packed by a codemix that did not count unreadable files have no such count
                      skipped_unreadable=sum(c["skipped"].get("unreadable", 0) for c in counts))
    check_readable(source, stats)
    splits = {split: {key: sum(c["splits"][split][key] for c in counts) for key in counts[0]["splits"][split]}
              for split in SPLITS}
    _check_splittable(source, splits, plan.spec)
    manifest = {
        "name": source.name,
        "kind": source.kind,
        "licence": source.licence,
        "provenance": source.provenance,
        "documents": sum(c["documents"] for c in counts),
        # every token of the kept documents, eos included: the samples' tokens plus the dropped tails
        "tokens": sum(s["tokens"] + s["dropped_tokens"] for s in splits.values()),
        "bytes": sum(c["bytes"] for c in counts),
        "max_bytes": source.max_bytes,
        "capped": any(c["capped"] for c in counts),
        "tokenizer_hash": hashes["tokenizer_hash"],
        "seq_len": plan.spec.seq_len,
        "token_dtype": plan.settings.dtype,
        "filters": {key: sum(c["filters"][key] for c in counts) for key in counts[0]["filters"]},
        "skipped": {"binary": stats.skipped_binary, "non_utf8": stats.skipped_non_utf8,
                    "unreadable": stats.skipped_unreadable},
        "read": {"files": stats.files, "documents": stats.documents, "bytes": stats.bytes},
        "splits": splits,
        "tasks": len(parts),
        "spec_hash": hashes["spec_hash"],
        "tokenizer_recipe": hashes["tokenizer_recipe"],
        "build_command": command,
        "seconds": round(seconds, 3),
    }
    write_json_atomic(tmp / MANIFEST_FILE, manifest)
    replace_dir(tmp, out / source.name)
    return manifest


def _check_splittable(source: SourceSpec, splits: dict[str, dict], spec: DataSpec) -> None:
    """Refuse a source whose train split, or val split (unless val_fraction is 0), has no sample: a
    reader cannot open it, and the held-out table would silently lack the source."""
    wanted = [split for split in SPLITS if split == "train" or spec.val_fraction > 0]
    empty = [split for split in wanted if splits[split]["samples"] == 0]
    if empty:
        tokens = sum(s["tokens"] + s["dropped_tokens"] for s in splits.values())
        raise ConfigError(f"source {source.name!r}: too small to split: its {tokens:,} tokens give no "
                          f"{' or '.join(empty)} sample of seq_len {spec.seq_len}; give it more text or lower seq_len")


def _check_text_up_front(spec: DataSpec, tasks: list[Task], files: dict[Task, list[Path]], origin: str) -> None:
    """Refuse a source to be built with no text in any file before a task runs (with a tokenizer not
    trained here, nothing read it yet): its refusal after the merge would come once every other source
    is built; a source only scanned was built before.
    Reading stops at a source's first document, so a readable source costs a file or so; a command
    is not run twice (its task checks it)."""
    for index in sorted({task.source for task in tasks}):
        source = spec.sources[index]
        if source.reader.type == "command":
            continue
        stats = ReadStats()
        if not any(next(read_source(source, stats, task.part, files[task]), None) is not None
                   for task in tasks if task.source == index):
            check_readable(source, stats, origin)


def _kept_texts(source: SourceSpec, cleaner: Cleaner, stats: ReadStats, kept: _Kept) -> Iterator[str]:
    """The source's documents that pass cleaning, until max_bytes is reached (the document that
    reaches it is kept, so a cap never splits a file; nothing after it is read)."""
    for doc in read_source(source, stats):
        if not cleaner.keep(doc, source.name):
            continue
        kept.documents += 1
        kept.bytes += len(doc.text.encode("utf-8"))
        yield doc.text
        if source.max_bytes is not None and kept.bytes >= source.max_bytes:
            kept.capped = True
            return


def _make_tokenizer(spec: DataSpec) -> Tokenizer:
    if spec.tokenizer.path is not None:
        return load_tokenizer(spec.tokenizer.path)
    return train_bpe(_tokenizer_sample(spec), spec.tokenizer.vocab_size, spec.tokenizer.min_frequency)


def _tokenizer_sample(spec: DataSpec) -> Iterator[str]:
    """The same number of cleaned bytes from every source (fewer if its cap is lower), so no kind
    dominates the vocabulary. Readers visit files in hash order, so the sample spreads over each tree."""
    for source in spec.sources:
        cleaner = Cleaner({source.name: code_filters_on(source)}, dedup=False)
        budget = min(spec.tokenizer.sample_bytes_per_source, source.max_bytes or spec.tokenizer.sample_bytes_per_source)
        stats = ReadStats()
        yield from _kept_texts(replace(source, max_bytes=budget), cleaner, stats, _Kept())
        check_readable(source, stats)  # before any task runs


def _tokenizer_recipe(spec: DataSpec) -> dict:
    if spec.tokenizer.path is not None:
        return {"path": spec.tokenizer.path, "file_hash": file_hash(spec.tokenizer.path)}
    # a trained tokenizer depends on every source's sample
    return {"train": asdict(spec.tokenizer), "sources": [hash_store.content(s) for s in spec.sources]}


def _near(spec: DataSpec) -> bool:
    return any(source.near_dedup for source in spec.sources)


def _spec_hash(spec: DataSpec, index: int, tokenizer_recipe: str) -> str:
    near = spec.sources[index].near_dedup is not None
    upstream = spec.sources[: index + 1] if spec.dedup or near else [spec.sources[index]]
    return _hash(
        {
            "format": FORMAT_VERSION,
            "tokenizer": tokenizer_recipe,
            "seq_len": spec.seq_len,
            "val_fraction": spec.val_fraction,
            "seed": spec.seed,
            "dedup": spec.dedup,
            # the source's own spec whole (its manifest records it); an earlier one's only as far as its text
            "sources": [hash_store.content(s) for s in upstream[:-1]] + [asdict(upstream[-1])],
            **({"minhash": asdict(spec.minhash)} if near else {}),
        }
    )


def _hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reusable_tokenizer_hash(path: Path, previous: dict[str, dict], recipe_hash: str) -> str | None:
    """The saved tokenizer's hash if a source built from the same tokenizer recipe used it, else None."""
    if not path.is_file():
        return None
    saved = file_hash(path)
    for manifest in previous.values():
        if manifest.get("tokenizer_recipe") == recipe_hash and manifest.get("tokenizer_hash") == saved:
            return saved
    return None


def _previous_manifests(out: Path, sources: list[SourceSpec]) -> dict[str, dict]:
    manifests = {}
    for source in sources:
        path = out / source.name / MANIFEST_FILE
        if path.is_file():
            manifests[source.name] = read_json(path)
    return manifests


def _added_entries(out: Path) -> list[dict]:
    """corpus.json's entries for sources that `add_sources` added (none if there is no corpus.json)."""
    path = out / CORPUS_FILE
    return [entry for entry in read_json(path)["sources"] if entry.get("added")] if path.is_file() else []


def _manifest_tokenizer(source_dir: Path) -> str | None:
    path = source_dir / MANIFEST_FILE
    return read_json(path).get("tokenizer_hash") if path.is_file() else None


def _say_seq_len_change(previous: dict[str, dict], spec: DataSpec, progress: Progress) -> None:
    old = sorted({m.get("seq_len") for m in previous.values()} - {spec.seq_len}, key=str)
    if old:
        progress(f"seq_len changed from {', '.join(map(str, old))} to {spec.seq_len}: rebuilding those sources")


def _remove_stale_tmp(out: Path, progress: Progress) -> None:
    """Remove what killed builds left (`*.tmp-<pid>`); refuse if that pid is a live build."""
    for entry in out.iterdir():
        match = _TMP_NAME.search(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and writer_alive(pid, entry):
            raise CodemixError(f"{entry}: another build (pid {pid}) is writing to {out}; wait for it or stop it")
        progress(f"removing {entry.name} (left by an interrupted build)")
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


@contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """Hold `out`'s build lock for the whole build, so that a second build of the folder is refused
    before it spends anything. An flock ends with its holder's process however that ends: a killed
    build's lock never blocks the next one."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").split()  # empty until it has written them
            host = f" on {holder[1]}" if len(holder) > 1 and holder[1] != socket.gethostname() else ""
            who = f"pid {holder[0]}{host}" if holder else "just starting"
            raise CodemixError(f"{out}: another build ({who}) is writing to it; wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class _Invalidator:
    """Removes corpus.json once, before the first change: the corpus is incomplete until rewritten."""

    def __init__(self, corpus_file: Path):
        self._corpus_file = corpus_file
        self._done = False

    def __call__(self) -> None:
        if not self._done:
            self._corpus_file.unlink(missing_ok=True)
            self._done = True


def _summary(manifest: dict) -> str:
    train = manifest["splits"]["train"]
    return (
        f"{manifest['name']}: {manifest['documents']:,} documents, {manifest['bytes'] / 1e6:.1f} MB, "
        f"{manifest['tokens']:,} tokens ({train['samples']:,} train samples), {manifest['seconds']:.1f} s"
    )
