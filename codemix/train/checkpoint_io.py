"""Files written so a kill at any moment leaves the previous version whole: Lightning checkpoints, and
the stage files written next to them.

Lightning's TorchCheckpointIO goes through an fsspec transaction, which on a local disk stages the
bytes in the system temp dir and then *moves* them: across file systems that is a copy, not an atomic
rename, and nothing is fsynced. Here the bytes go to a temp file in the checkpoint's own directory, are
fsynced, and replace the target with os.replace (atomic on POSIX): codemix.atomic.atomic_file."""

from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from codemix.atomic import atomic_file
from codemix.leftovers import sweep_leftovers
from codemix.runs.layout import LAST_CHECKPOINT, PREVIOUS_CHECKPOINT


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_file(Path(path)) as out:
            torch.save(checkpoint, out)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temp files of checkpoint writers that were killed (never a valid checkpoint); a live
    writer's are left alone."""
    return [path for name in (LAST_CHECKPOINT, PREVIOUS_CHECKPOINT) for path in sweep_leftovers(directory / name)]

