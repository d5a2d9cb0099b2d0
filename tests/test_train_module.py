"""The training pieces that need no corpus: loss, optimizer groups and state, atomic checkpoints,
metrics merging, the peak-FLOPs table."""

import csv
import os
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from codemix.config.recipe_schema import OptimizerSection, ScheduleSection
from codemix.config.presets import preset
from codemix.model.transformer import Decoder
from codemix.train.callbacks import peak_flops
from codemix.train.checkpoint_io import SyncedCheckpointIO, remove_stale_temporaries
from codemix.train.resume import rotate
from codemix.train.module import CodemixLM, load_optimizer_moments, parameter_groups, per_sample_loss
from codemix.runs.layout import StageDir
from codemix.train.stages import merge_metrics, read_metrics

CFG = preset("tiny", vocab_size=300, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)


def test_per_sample_loss_is_next_token_cross_entropy():
    torch.manual_seed(0)
    model = Decoder(CFG)
    ids = torch.randint(0, CFG.vocab_size, (3, 17))
    logits = model(ids[:, :-1])
    expected = torch.stack([F.cross_entropy(logits[i], ids[i, 1:]) for i in range(3)])
    torch.testing.assert_close(per_sample_loss(model, ids), expected)


@pytest.mark.parametrize("tied", [True, False])
def test_weight_decay_only_on_projection_matrices(tied):
    model = Decoder(replace(CFG, tie_embeddings=tied))
    decay, no_decay = parameter_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "embed.weight" not in decayed and not any("norm" in n for n in decayed)
    assert ("lm_head.weight" in decayed) == (not tied)  # an untied head is a projection
    assert "blocks.0.attn.wq.weight" in decayed and "blocks.1.mlp.down.weight" in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_weight_decay_follows_names_not_shapes():
    """A sharding wrapper may present a matrix flattened to 1-D: it keeps its decay."""
    model = Decoder(CFG)
    model.blocks[0].attn.wq.weight = torch.nn.Parameter(model.blocks[0].attn.wq.weight.detach().flatten())
    decay, _ = parameter_groups(model, weight_decay=0.1)
    assert any(p is model.blocks[0].attn.wq.weight for p in decay["params"])


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones():
    torch.manual_seed(0)
    ids = torch.randint(0, CFG.vocab_size, (2, 16))
    eager = CodemixLM(CFG, OptimizerSection(lr=1e-2), ScheduleSection(kind="constant"), 10, ["a"], 16)
    compiled = CodemixLM(CFG, OptimizerSection(lr=1e-2), ScheduleSection(kind="constant"), 10, ["a"], 16,
                         compile_blocks=True)
    compiled.model.load_state_dict(eager.model.state_dict())
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())
    losses = [per_sample_loss(m.model, ids) for m in (eager, compiled)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    for loss in losses:
        loss.mean().backward()
    for (name, p), q in zip(eager.model.named_parameters(), compiled.model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_optimizer_moments_come_from_the_parent_hyper_parameters_from_the_stage():
    parent = CodemixLM(CFG, OptimizerSection(lr=1e-2, weight_decay=0.3), ScheduleSection(kind="constant"), 10, ["a"], 16)
    optimizer = parent.configure_optimizers()["optimizer"]
    parent.model(torch.randint(0, CFG.vocab_size, (2, 8))).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()

    child = CodemixLM(CFG, OptimizerSection(lr=5e-4, weight_decay=0.0), ScheduleSection(kind="constant"), 10, ["a"], 16,
                      init_optimizer_state=saved)
    child_optimizer = child.configure_optimizers()["optimizer"]
    loaded = child_optimizer.state_dict()
    assert [g["lr"] for g in loaded["param_groups"]] == [5e-4, 5e-4]
    assert [g["weight_decay"] for g in loaded["param_groups"]] == [0.0, 0.0]
    for index, state in saved["state"].items():
        torch.testing.assert_close(loaded["state"][index]["exp_avg"], state["exp_avg"], rtol=0, atol=0)

    other = Decoder(replace(CFG, tie_embeddings=False))  # its untied head is one more decayed matrix
    mismatched = torch.optim.AdamW(parameter_groups(other, 0.1))
    with pytest.raises(ValueError, match="parameter groups of sizes"):
        load_optimizer_moments(other, mismatched, saved)


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot serialize this")


def test_rotation_keeps_a_whole_last_or_previous_checkpoint_and_sweeps_dead_writers(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    last = checkpoints / "last.ckpt"
    io = SyncedCheckpointIO()
    for step in (1, 2):
        fresh = checkpoints / f".last.ckpt.tmp-{os.getpid()}-step{step}"
        io.save_checkpoint({"step": step}, fresh)
        rotate(fresh, last)
    assert torch.load(last)["step"] == 2 and torch.load(checkpoints / "previous.ckpt")["step"] == 1
    sharded = checkpoints / f".last.ckpt.tmp-{os.getpid()}-step3"  # a folder of shards replaces a file
    sharded.mkdir()
    (sharded / "meta.pt").write_bytes(b"3")
    rotate(sharded, last)
    assert (last / "meta.pt").read_bytes() == b"3" and torch.load(checkpoints / "previous.ckpt")["step"] == 2
    io.save_checkpoint({"step": 4}, fresh := checkpoints / f".last.ckpt.tmp-{os.getpid()}-step4")
    rotate(fresh, last)  # and a file replaces the folder, which becomes previous
    assert torch.load(last)["step"] == 4 and (checkpoints / "previous.ckpt" / "meta.pt").is_file()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", "previous.ckpt"]

    with pytest.raises(RuntimeError, match="cannot serialize"):  # a failed write publishes nothing
        io.save_checkpoint({"bad": _Unpicklable()}, checkpoints / ".last.ckpt.tmp-999999-step5")
    dead_folder = checkpoints / ".last.ckpt.tmp-999999-step6"  # what ranks killed mid-write leave
    dead_folder.mkdir()
    (dead_folder / "__0_0.distcp").write_bytes(b"half a shard")
    assert sorted(remove_stale_temporaries(checkpoints)) == sorted(
        [checkpoints / ".last.ckpt.tmp-999999-step5", dead_folder])
    assert torch.load(last)["step"] == 4


def _write_csv(path, rows):
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)


def test_metrics_of_a_resumed_stage_replace_the_retrained_rows(tmp_path):
    stage = StageDir(tmp_path)
    first = [{"step": s, "train/loss": 10 - s} for s in range(6)]  # killed after step 5
    second = [{"step": s, "train/loss": 100 - s, "val/loss/a": 1.5} for s in range(4, 8)]  # resumed at step 4
    _write_csv(tmp_path / "logs/csv/version_0/metrics.csv", first)
    _write_csv(tmp_path / "logs/csv/version_1/metrics.csv", second)
    rows = read_metrics(merge_metrics(stage))
    assert [int(r["step"]) for r in rows] == list(range(8))
    assert [float(r["train/loss"]) for r in rows] == [10, 9, 8, 7, 96, 95, 94, 93]
    assert list(rows[0])[0] == "step" and rows[0]["val/loss/a"] == "" and rows[-1]["val/loss/a"] == "1.5"


def test_mfu_is_omitted_where_no_peak_rate_is_known():
    assert peak_flops(torch.device("cpu"), "bf16-mixed") is None


@pytest.mark.gpu
def test_peak_rate_of_the_lent_gpu():
    device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(device)
    expected = 989e12 if ("H100" in name and "PCIe" not in name and "NVL" not in name) or "H200" in name else None
    if expected is None:
        pytest.skip(f"no table check written for {name}")
    assert peak_flops(device, "bf16-mixed") == expected
    assert peak_flops(device, "32-true") is None
