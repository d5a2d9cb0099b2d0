"""Sharded (torch.distributed.checkpoint) training checkpoints, in one process: merged into one file they
hold exactly the model and optimizer state a plain Lightning checkpoint holds; a torn or incomplete
folder is refused with a one-line reason, set aside (renamed, never deleted), and the one before resumed.
The 2-rank save and resume is in test_train_fsdp2.py."""

from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

from codemix.config.presets import preset
from codemix.model.transformer import Decoder
from codemix.train.module import CHECKPOINT_KEY, parameter_groups
from codemix.train.resume import resume_checkpoint
from codemix.train.sharded_checkpoint import consolidate, sharded_problem

CFG = preset("tiny", vocab_size=300, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)
GLOBAL_BATCH = 4


class Wrapper(torch.nn.Module):  # the LightningModule's names: model.<decoder parameter>
    def __init__(self) -> None:
        super().__init__()
        self.model = Decoder(CFG)


def trained(steps: int = 2) -> tuple[Wrapper, torch.optim.Optimizer]:
    torch.manual_seed(0)
    wrapper = Wrapper()
    optimizer = torch.optim.AdamW(parameter_groups(wrapper, 0.1), lr=1e-3)
    for _ in range(steps):
        wrapper.model(torch.randint(0, CFG.vocab_size, (2, 9))).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return wrapper, optimizer


def save_sharded(path: Path, wrapper: Wrapper, optimizer: torch.optim.Optimizer, step: int = 2) -> Path:
    dcp.save({"state_dict": get_model_state_dict(wrapper), "optimizer_0": get_optimizer_state_dict(wrapper, optimizer)},
             checkpoint_id=path)
    torch.save({"global_step": step, CHECKPOINT_KEY: {"model_config": CFG.to_dict()}}, path / "meta.pt")
    return path


def test_a_merged_sharded_checkpoint_holds_the_plain_model_and_optimizer_state(tmp_path):
    wrapper, optimizer = trained()
    merged = torch.load(consolidate(save_sharded(tmp_path / "last.ckpt", wrapper, optimizer), tmp_path / "merged.ckpt"),
                        weights_only=False)
    assert merged["global_step"] == 2 and merged[CHECKPOINT_KEY]["model_config"] == CFG.to_dict()
    expected = wrapper.state_dict()
    assert merged["state_dict"].keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(merged["state_dict"][name], tensor), name
    (saved,) = merged["optimizer_states"]
    plain = optimizer.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [g["params"] for g in plain["param_groups"]]
    assert [g["weight_decay"] for g in saved["param_groups"]] == [g["weight_decay"] for g in plain["param_groups"]]
    assert saved["state"].keys() == plain["state"].keys()
    for index, moments in plain["state"].items():
        for key, value in moments.items():
            assert torch.equal(torch.as_tensor(saved["state"][index][key]), torch.as_tensor(value)), (index, key)
    resumed = torch.optim.AdamW(parameter_groups(Wrapper(), 0.1), lr=1e-3)
    resumed.load_state_dict(saved)  # a plain optimizer takes it as it is


@pytest.mark.parametrize("damage", ["truncated shard", "no index", "no meta"])
def test_a_torn_sharded_checkpoint_is_set_aside_and_the_previous_one_resumed(tmp_path, damage, capsys):
    wrapper, optimizer = trained()
    checkpoints = tmp_path / "checkpoints"
    previous = save_sharded(checkpoints / "previous.ckpt", wrapper, optimizer)
    last = save_sharded(checkpoints / "last.ckpt", wrapper, optimizer)
    assert sharded_problem(last) is None
    if damage == "truncated shard":
        (shard,) = last.glob("*.distcp")
        shard.write_bytes(shard.read_bytes()[:100])
    else:
        (last / (".metadata" if damage == "no index" else "meta.pt")).unlink()
    assert "truncated shard" in sharded_problem(last) if damage == "truncated shard" else "incomplete" in sharded_problem(last)

    assert resume_checkpoint(last, GLOBAL_BATCH, decides=False) == previous  # another rank only looks
    assert last.is_dir()
    assert resume_checkpoint(last, GLOBAL_BATCH) == previous
    (aside,) = checkpoints.glob("last.ckpt.unusable-*")
    assert aside.is_dir() and not last.exists()  # renamed, not deleted
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(last) in line and aside.name in line
