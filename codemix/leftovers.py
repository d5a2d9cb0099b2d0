"""Leftovers of killed writers: temp files and folders named `.<target>.tmp-<pid>...` (codemix.atomic's
TMP_MARK) beside their target, which the next writer of that target removes once that pid is no longer
the process that wrote them. A live writer's temporaries are never touched."""

import os
import re
import shutil
from pathlib import Path

from codemix.atomic import TMP_MARK


def sweep_leftovers(target: Path) -> list[Path]:
    """Remove the temporaries that dead writers left beside `target`; returns what was removed."""
    folder = target.parent
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(target.name)}{re.escape(TMP_MARK)}(\d+)(-|$)")
    removed = []
    for entry in folder.iterdir():
        found = pattern.match(entry.name)
        if found is None:
            continue
        pid = int(found.group(1))
        if pid == os.getpid() or writer_alive(pid, entry):
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return True


def writer_alive(pid: int, entry: Path) -> bool:
    """Whether process `pid` may be the writer of `entry`: alive, and started before `entry` was last
    modified. A pid reused by a process started later is not that writer."""
    if not pid_exists(pid):
        return False
    started = process_start_time(pid)
    # /proc gives the start time in clock ticks since boot; boot time has 1 s resolution
    return started is None or started <= entry.lstat().st_mtime + 1.0


def process_start_time(pid: int) -> float | None:
    """Seconds since the epoch at which `pid` started (Linux /proc), None where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the parenthesised command
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
