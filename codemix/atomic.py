"""Writes that a kill at any moment leaves whole: the reader sees the previous version or the new
one, never a torn file or a half-replaced directory.

A file goes to a temp file beside its target (same file system, so the rename is atomic), is
fsynced, and replaces the target with os.replace; the directory is fsynced so the rename is durable.
A directory is built elsewhere by the caller and swapped in with `replace_dir`."""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".tmp-"  # in every temp file's name, so a killed writer's leftovers can be found


@contextmanager
def atomic_file(target: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside `target` for writing; on success it is fsynced and renamed over `target`,
    on any failure it is removed and `target` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)  # make the rename itself durable


def write_text_atomic(path: Path, content: str) -> Path:
    with atomic_file(path, "w") as out:
        out.write(content)
    return path


def write_json_atomic(path: Path, payload: Any) -> None:
    """JSON, indented, with a final newline."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing target is moved aside first and removed after, so at no
    moment does a half-deleted old version stand at `target`."""
    if not target.exists():
        os.replace(new, target)
        return
    # named like a temp file, so a sweep of a killed writer's leftovers (TMP_MARK + pid) finds it too
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}{os.getpid()}-old", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
