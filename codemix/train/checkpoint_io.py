"""Lightning checkpoint files written durably, and the leftovers of killed writers.

Lightning's TorchCheckpointIO goes through an fsspec transaction, which on a local disk stages the
bytes in the system temp dir and then *moves* them: across file systems that is a copy, and nothing
is fsynced. A codemix checkpoint is always written under a temp name beside last.ckpt and renamed into
place once whole (codemix.train.resume.save_stage_checkpoint), so here the bytes only go straight to
that file and are fsynced before the rename publishes them."""

import os
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from codemix.leftovers import sweep_leftovers
from codemix.runs.layout import LAST_CHECKPOINT, PREVIOUS_CHECKPOINT


class SyncedCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            torch.save(checkpoint, out)
            out.flush()
            os.fsync(out.fileno())


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temp files and folders of checkpoint writers that were killed (never a valid
    checkpoint); a live writer's are left alone."""
    return [path for name in (LAST_CHECKPOINT, PREVIOUS_CHECKPOINT) for path in sweep_leftovers(directory / name)]
