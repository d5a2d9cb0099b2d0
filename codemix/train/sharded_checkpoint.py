"""Sharded training checkpoints under FSDP2 (trainer.strategy fsdp2).

Mid-stage, every rank writes only its own shards of the weights and AdamW moments through
torch.distributed.checkpoint (DCP), into one folder on the file system all nodes share: nothing is
gathered, so a checkpoint of the 2.8B costs each rank its shard, not the whole model in CPU memory on
rank 0. Lightning's ModelParallelStrategy writes the folder (DCP's `.metadata` + one file per rank)
and rank 0 adds `meta.pt` with the rest of the state (step, loops, loader position, callbacks).

DCP re-shards on load, so the folder resumes under fsdp2 on any number of ranks. A strategy that does
not shard (DDP, one process) resumes from it after `consolidate` has merged the shards into one
ordinary Lightning checkpoint file. The end-of-stage checkpoint is gathered into one file (`gathered`):
it is what a child stage, the export and the final weights read."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.utilities.load import _METADATA_FILENAME, _load_distributed_checkpoint
from lightning.pytorch.strategies import ModelParallelStrategy

from codemix.atomic import atomic_file

DCP_METADATA = ".metadata"  # written last by DCP's coordinator: the shards before it are complete
META = _METADATA_FILENAME  # meta.pt, rank 0's non-tensor state
OPTIMIZER_KEY = "optimizer_0"  # how ModelParallelStrategy stores the (single) optimizer's shards


class ShardedStrategy(ModelParallelStrategy):
    """FSDP2 data parallel over every rank (no tensor parallelism) that writes sharded checkpoints,
    and one gathered file inside `gathered()`."""

    def __init__(self, world_size: int) -> None:
        super().__init__(data_parallel_size=world_size, tensor_parallel_size=1, save_distributed_checkpoint=True)

    @contextmanager
    def gathered(self) -> Iterator[None]:
        # Lightning reads this flag in save_checkpoint and in the state-dict collection it calls.
        self._save_distributed_checkpoint = False
        try:
            yield
        finally:
            self._save_distributed_checkpoint = True


def is_sharded(path: Path) -> bool:
    return path.is_dir()


def sharded_problem(path: Path) -> Optional[str]:
    """Why a sharded checkpoint folder cannot be resumed from (None if it can): DCP's index missing
    (the save did not finish) or a shard file shorter than the index says (a torn copy)."""
    from torch.distributed.checkpoint import FileSystemReader

    if not (path / DCP_METADATA).is_file() or not (path / META).is_file():
        return f"is an incomplete sharded checkpoint (no {DCP_METADATA} or {META})"
    try:
        storage = FileSystemReader(path).read_metadata().storage_data
    except Exception as err:  # a torn or foreign index: pickle raises several types
        return f"has an unreadable {DCP_METADATA} ({type(err).__name__})"
    needed: dict[str, int] = {}
    for info in storage.values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        shard = path / name
        if not shard.is_file() or shard.stat().st_size < size:
            return f"has a missing or truncated shard {name}"
    return None


def read_meta(path: Path) -> Any:
    """The non-tensor part of a sharded checkpoint (step, loops, callbacks, codemix's own keys)."""
    return torch.load(path / META, map_location="cpu", weights_only=False, mmap=True)


def consolidate(path: Path, target: Path) -> Path:
    """Merge a sharded checkpoint into one Lightning checkpoint file at `target` (whole model and
    optimizer in CPU memory), loadable by a strategy that does not shard."""
    checkpoint = _load_distributed_checkpoint(path)  # DCP's tensors + meta.pt, without a process group
    optimizer = checkpoint.pop(OPTIMIZER_KEY, None)
    if optimizer is not None:
        checkpoint["optimizer_states"] = [by_position(optimizer)]
    with atomic_file(target) as out:  # ranks that consolidate at once each write whole, identical files
        torch.save(checkpoint, out)
    return target


def by_position(optimizer: dict[str, Any]) -> dict[str, Any]:
    """A DCP optimizer state keyed by parameter name, keyed instead by position in the parameter groups,
    as torch.optim.Optimizer.state_dict() does (the groups list the same names in the same order)."""
    position: dict[str, int] = {}
    groups = []
    for group in optimizer["param_groups"]:
        ids = [position.setdefault(name, len(position)) for name in group["params"]]
        groups.append({**group, "params": ids})
    state = {position[name]: value for name, value in optimizer["state"].items()}
    return {"state": state, "param_groups": groups}


def consolidated_path(sharded: Path) -> Path:
    """Where the merged file of a sharded checkpoint goes: beside it, named after it, the same on every
    rank (codemix's own, removed with the stage's other fallbacks when the stage completes)."""
    return sharded.with_name(f"{sharded.name}{CONSOLIDATED}")


CONSOLIDATED = ".consolidated"
