"""The one place codemix imports mosaicml-streaming.

streaming 0.13 imports `streaming.vision`, which needs torchvision; PyPI's only torchvision for this
torch is a CUDA build that crashes beside a CPU torch (and takes torchmetrics and Lightning with it).
codemix uses none of streaming's ready-made vision, text or multimodal datasets, so empty modules
stand in for them before the import (the text ones also pull transformers: seconds per process).
"""

import sys
import types

for _unused in ("streaming.vision", "streaming.text", "streaming.multimodal"):
    sys.modules.setdefault(_unused, types.ModuleType(_unused))

import streaming  # noqa: E402
from streaming import LocalDataset, MDSWriter, Stream, StreamingDataLoader, StreamingDataset  # noqa: E402

__all__ = ["streaming", "LocalDataset", "MDSWriter", "Stream", "StreamingDataset", "StreamingDataLoader"]
