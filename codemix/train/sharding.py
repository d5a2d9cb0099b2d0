"""FSDP2 for the Decoder: each block is one unit of `fully_shard`, and the root holds the embedding,
the final norm and the (tied) head. Lightning's ModelParallelStrategy creates the device mesh and
calls CodemixLM.configure_model, which applies this; the rest of training is unchanged."""

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from codemix.model.transformer import Decoder


def shard_decoder(model: Decoder, mesh: DeviceMesh, bf16: bool) -> None:
    """Shard in place over the mesh's data-parallel dimension. bf16: compute with bf16 parameters and
    reduce gradients in fp32 (the master weights and AdamW moments stay fp32, sharded)."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
