"""FSDP2 for the Decoder: each block is one unit of `fully_shard`, and the root holds the embedding,
the final norm and the (tied) head. Lightning's ModelParallelStrategy creates the device mesh and
calls CodemixLM.configure_model, which applies this; the rest of training is unchanged.

The model arrives on the meta device, so no rank ever holds all of it: after sharding, each parameter
is drawn at full size on the CPU one at a time (the same random stream as a one-process
initialisation: the run is the same run whatever the number of ranks) and each rank keeps its
shard; a parent's weights are copied in shard by shard the same way."""

from collections.abc import Mapping
from typing import Optional

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from codemix.model.transformer import Decoder


def shard_decoder(model: Decoder, mesh: DeviceMesh, device: torch.device, bf16: bool, init_seed: int,
                  weights: Optional[Mapping[str, torch.Tensor]] = None) -> None:
    """Shard in place over `mesh`, then materialise the meta parameters: from `weights` (full tensors)
    when given, else drawn from `init_seed`. bf16: compute with bf16 parameter copies and reduce
    gradients in fp32 (the master weights and AdamW moments stay fp32, sharded)."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    model.to_empty(device=device)
    for name, param in model.named_parameters():
        if weights is None:
            full = torch.empty(param.shape, dtype=param.dtype)
            model.init_parameter(name, full, init_seed)
        else:
            full = weights[name].to(param.dtype)
        _copy_shard(param, full)


def _copy_shard(param: torch.Tensor, full: torch.Tensor) -> None:
    assert isinstance(param, DTensor)
    # src_data_rank=None: every rank holds the same full tensor, so each slices its own shard locally.
    shard = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
    with torch.no_grad():
        param.to_local().copy_(shard.to_local())
