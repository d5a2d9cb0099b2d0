"""Writes that a kill at any moment leaves whole: the reader sees the previous version or the new
one, never a torn file or a half-replaced directory.

A file goes to a temp file beside its target (same file system, so the rename is atomic), is
fsynced, and replaces the target with os.replace; the directory is fsynced so the rename is durable.
A directory is filled in a temp folder beside its target (`atomic_dir`: checkpoints, exports), whose
files and folders are fsynced before it is swapped in with `replace_dir`."""

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
    fsync_dir(target.parent)  # make the rename itself durable


def write_text_atomic(path: Path, content: str) -> Path:
    with atomic_file(path, "w") as out:
        out.write(content)
    return path


def write_json_atomic(path: Path, payload: Any) -> None:
    """JSON, indented, with a final newline."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temp folder beside `target` for the caller to fill; on success everything in it is fsynced,
    given the modes of any new folder and file (0777 / 0666 less the umask, not the 0700 of a private
    temp folder), and it replaces `target`; on any failure it is removed and `target` left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        _public_modes(tmp)
        fsync_tree(tmp)
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)  # make the rename itself durable


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


def _public_modes(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)  # the only way to read it
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def fsync_tree(folder: Path) -> None:
    """Every file's data, then every folder's entries, bottom up: the rename publishes only what is on disk."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
