"""A corpus's kept document hashes, so a later build need not read a source's text again to dedup
against it (codemix.data.build).

With dedup on, a source's duplicates are decided against every source before it in the data YAML, so
adding or changing a source re-decides it against the earlier ones. Their scan tasks' hash files (24
bytes a document, sorted by hash: any bucket count reads them, codemix.data.tasks) are kept in
`<corpus>/.hashes/<source>/<slice>.npy` beside a key of everything the hashes depend on: the source's
reader, caps and filters, its place in the YAML, its slicing and each input file's path, size and
mtime. A build whose key for a source matches hard-links them into its work folder, and that source's
scan tasks then skip reading (a source only hashed: one being rebuilt is read anyway). Sources whose
input cannot be listed (command, hf_disk readers) or with near_dedup (their MinHash signatures are not
kept) are always read."""

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from codemix.atomic import write_json_atomic
from codemix.config.data_spec import DataSpec, SourceSpec, code_filters_on
from codemix.data.sources import UNSLICEABLE_READERS
from codemix.data.tasks import BuildPlan, Task

STORE = ".hashes"
KEY_FILE = "key.json"


def content(source: SourceSpec) -> dict:
    """What of a source's spec changes the text it yields (not its name, licence or provenance)."""
    return {"reader": asdict(source.reader), "max_bytes": source.max_bytes, "code_filters": code_filters_on(source),
            "near_dedup": source.near_dedup}


def store_key(spec: DataSpec, index: int, tasks: list[Task], files: dict[Task, list[Path]]) -> str | None:
    """The key of source `index`'s hashes as this build would scan them; None: never kept."""
    source = spec.sources[index]
    if source.reader.type in UNSLICEABLE_READERS or source.near_dedup:
        return None
    mine = [task for task in tasks if task.source == index]
    listed = [(str(path), path.stat().st_size, path.stat().st_mtime_ns) for task in mine for path in files[task]]
    payload = {"source": content(source), "index": index, "dedup": spec.dedup, "slices": [repr(t.part) for t in mine],
               "files": listed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def link_kept(out: Path, plan: BuildPlan, index: int, key: str | None) -> bool:
    """Hard-link source `index`'s kept hashes into the plan's work folder if their key is `key`."""
    folder = out / STORE / plan.spec.sources[index].name
    if key is None or not (folder / KEY_FILE).is_file() or json.loads((folder / KEY_FILE).read_text()) != {"key": key}:
        return False
    mine = [task for task in plan.tasks if task.source == index]
    if not all(_intact(folder / plan.hashes_path(task).name) for task in mine):
        return False  # a kept file lost or damaged: the source is read again, and its hashes kept anew
    for task in mine:
        target = plan.hashes_path(task)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(folder / target.name, target)
    return True


def keep(out: Path, plan: BuildPlan, keys: dict[int, str | None]) -> None:
    """After the scan: keep each keyed source's hash files under its key (replacing what was kept), and
    drop what is kept of sources no longer in the data YAML (codemix wrote all of it). `plan` is a
    whole data YAML's build (not `codemix data add`'s, whose sources are not the corpus's all)."""
    store = out / STORE
    for index, key in keys.items():
        if key is None:
            continue
        name = plan.spec.sources[index].name
        fresh = store / f"{name}.tmp-{os.getpid()}"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        for task in (task for task in plan.tasks if task.source == index):
            os.link(plan.hashes_path(task), fresh / plan.hashes_path(task).name)
        write_json_atomic(fresh / KEY_FILE, {"key": key})
        shutil.rmtree(store / name, ignore_errors=True)
        fresh.rename(store / name)
    names = {source.name for source in plan.spec.sources}
    for folder in store.glob("*") if store.is_dir() else []:
        if folder.name not in names:
            shutil.rmtree(folder)


def _intact(path: Path) -> bool:
    """Whether `path` is a whole .npy file (its header parses and its data is all there)."""
    try:
        np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return False
    return True
