"""The one place codemix imports mosaicml-streaming.

streaming 0.13 imports `streaming.vision`, which needs torchvision; PyPI's only torchvision for this
torch is a CUDA build that crashes beside a CPU torch (and takes torchmetrics and Lightning with it).
codemix uses none of streaming's ready-made vision, text or multimodal datasets, so empty modules
stand in for them before the import (the text ones also pull transformers: seconds per process).

Shared memory per job. streaming names its shared memory and file locks `<n>_<what>` (/dev/shm and the
temp dir) with n the first number whose names are free, and every process on the machine draws from
the same numbers: two runs starting together can both take n (check, then create), and a run whose
segments another process unlinked hands n to the next run while it still uses it. Either way two jobs
share an epoch counter, a barrier and shard states, and a loader waits forever in `_ready_thread` /
`_prepare_thread`. Here each job's names are prefixed with its own namespace, `codemix<pid>-<start>`
of the process that owns the job (the pid and its start time, so a reused pid is not mistaken for
it); every process of the job (ranks, loader workers) inherits it through CODEMIX_SHM_NAMESPACE, and
the leftovers of namespaces whose owner is gone (a run killed with -9) are swept.

A shard evicted while awaited. With a cache limit, streaming 0.13's ready thread waits for a sample's
shard to become local, but if the shard is evicted (another thread made room) after the thread looked
at it, nobody fetches it again: the ready thread, the download thread (at its predownload window) and
the loader all sleep forever. `_ready_thread` below is streaming's, except that an awaited shard found
evicted is prepared again; the sample order does not change (the ready thread only decides when).
"""

import os
import re
import sys
import tempfile
import time
import types
from pathlib import Path

from codemix.leftovers import pid_exists, process_start_time

for _unused in ("streaming.vision", "streaming.text", "streaming.multimodal"):
    sys.modules.setdefault(_unused, types.ModuleType(_unused))

import streaming  # noqa: E402
import streaming.base.dataset  # noqa: E402
import streaming.base.shared  # noqa: E402
import streaming.base.shared.prefix  # noqa: E402
import streaming.base.util  # noqa: E402
from streaming.base.dataset import _ShardState  # noqa: E402
from streaming import LocalDataset, MDSWriter, Stream, StreamingDataLoader, StreamingDataset  # noqa: E402

__all__ = ["streaming", "LocalDataset", "MDSWriter", "Stream", "StreamingDataset", "StreamingDataLoader",
           "claim_shm_namespace", "sweep_stale_shared_memory"]

NAMESPACE_ENV = "CODEMIX_SHM_NAMESPACE"
SHM = Path("/dev/shm")
_NAMESPACED = re.compile(r"codemix(\d+)-(\d+)_")


def _namespace_of(pid: int) -> str:
    started = process_start_time(pid)
    return f"codemix{pid}-{0 if started is None else round(started * 100)}"


def claim_shm_namespace() -> str:
    """Settle this job's namespace at the start of a training, before any rank or worker starts. A rank
    started by Lightning's launcher (LOCAL_RANK > 0) keeps the one its rank 0 passed on; under torchrun
    every local rank takes its agent's (their common parent); any other process takes its own, even if
    it inherited one from the process that started it (a test running codemix train beside itself)."""
    inherited = os.environ.get(NAMESPACE_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0" and "TORCHELASTIC_RUN_ID" not in os.environ:
        namespace = inherited
    else:
        namespace = _namespace_of(os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else os.getpid())
    os.environ[NAMESPACE_ENV] = namespace
    sweep_stale_shared_memory()
    return namespace


def _namespaced_path(prefix_int: int, name: str) -> str:
    namespace = os.environ.get(NAMESPACE_ENV) or claim_shm_namespace()
    return f"{namespace}_{prefix_int:06}_{name}"


def _owner_alive(pid: int, started: int) -> bool:
    if not pid_exists(pid):
        return False
    now = process_start_time(pid)
    return now is None or round(now * 100) == started  # unknown: assume it is the owner


def sweep_stale_shared_memory() -> list[Path]:
    """Remove the shared memory and lock files of namespaces whose owning process is gone; returns them.
    Only names of codemix's own pattern are touched, never another job's that is still running."""
    removed = []
    for folder in (SHM, Path(tempfile.gettempdir())):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            found = _NAMESPACED.match(entry.name)
            if found and entry.is_file() and not _owner_alive(int(found.group(1)), int(found.group(2))):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


# Every module that resolves a shared name holds its own reference to streaming's function.
for _module in (streaming.base.shared.prefix, streaming.base.shared, streaming.base.dataset, streaming.base.util):
    _module._get_path = _namespaced_path


def _ready_thread(self: StreamingDataset, it) -> None:
    """streaming 0.13's StreamingDataset._ready_thread, with an evicted awaited shard prepared again."""
    while not it.should_exit() and it.ready_index < it.total and not self._event.is_set():
        if self.predownload is not None and self.predownload < it.ready_index - it.yield_index:
            time.sleep(streaming.base.dataset.TICK)
            continue
        sample_id = it.sample_ids[it.ready_index]
        if sample_id != -1:
            shard_id, _ = self.spanner[sample_id]
            while self._shard_states[shard_id] != _ShardState.LOCAL and not self._event.is_set():
                if self._shard_states[shard_id] == _ShardState.REMOTE:  # not yet, or evicted meanwhile
                    self.prepare_shard(shard_id, False)
                else:
                    time.sleep(streaming.base.dataset.TICK)
        it.ready_index += 1
    it.on_exit()


StreamingDataset._ready_thread = _ready_thread
