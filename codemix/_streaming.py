"""The one place codemix imports mosaicml-streaming.

streaming 0.13 imports `streaming.vision`, which needs torchvision; PyPI's only torchvision for this
torch is a CUDA build that crashes beside a CPU torch (and takes torchmetrics and Lightning with it).
codemix uses no vision datasets, so an empty `streaming.vision` is registered before the import.
"""

import sys
import types

if "streaming.vision" not in sys.modules:
    sys.modules["streaming.vision"] = types.ModuleType("streaming.vision")

import streaming  # noqa: E402
from streaming import MDSWriter, Stream, StreamingDataLoader, StreamingDataset  # noqa: E402

__all__ = ["streaming", "MDSWriter", "Stream", "StreamingDataset", "StreamingDataLoader"]
