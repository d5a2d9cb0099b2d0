"""sha256 of files and directories: the one hasher for tokenizers, weights, checkpoints and data files.

Files are read in 1 MiB blocks (a multi-GB checkpoint never sits in memory) and each digest is cached
on the file's (path, size, mtime_ns, inode): a file is read once per process, and one rewritten or
replaced (an atomic save renames a new inode into place) is read again."""

import hashlib
import os
from functools import lru_cache
from pathlib import Path

BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes."""
    path = Path(path)
    stat = path.stat()
    return _cached_file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@lru_cache(maxsize=256)
def _cached_file_sha256(path: Path, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for block in iter(lambda: src.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 over a directory's files (sorted relative names and their sha256), or over one
    file's sha256 (with an empty name): a checkpoint's content, whichever form it is saved in."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else ''}\0".encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()
