"""The index of completed stages (<runs>/_stages/<identity>) and their reuse by another recipe."""

import os
from pathlib import Path

from codemix.paths import runs_dir
from codemix.runs.layout import STAGE_INDEX, Home, StageDir


def _index_entry(identity: str, home: Home) -> Path:
    return runs_dir(home) / STAGE_INDEX / identity


def find_completed(identity: str, home: Home = None) -> StageDir | None:
    """The completed stage with this identity, from any recipe, or None."""
    entry = _index_entry(identity, home)
    if not entry.exists():
        return None
    found = StageDir(entry.resolve())
    return found if found.is_complete() else None


def register_completed(identity: str, stage: StageDir, home: Home = None) -> None:
    """Point the index at `stage` (atomically: a relative symlink renamed into place)."""
    entry = _index_entry(identity, home)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{identity}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(stage.path, entry.parent))
    os.replace(tmp, entry)


def link_into_recipe(found: StageDir, wanted: StageDir) -> None:
    """Make a reused stage visible under this recipe's run directory too (a symlink to the original)."""
    if wanted.path.exists() or wanted.path.is_symlink() or found.path == wanted.path.resolve():
        return
    wanted.path.parent.mkdir(parents=True, exist_ok=True)
    wanted.path.symlink_to(os.path.relpath(found.path, wanted.path.parent))
