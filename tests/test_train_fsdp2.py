"""FSDP2 through Lightning's ModelParallelStrategy: two gloo processes on CPU, launched by Lightning from
a real `codemix train` and by torchrun, shard every block and the root, and reproduce the one-process
run (loss curve, token counts, final weights) for the same global batch, weight decay and clipping
included."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codemix.model.transformer import Decoder
from codemix.train.module import parameter_groups
from codemix.train.run import train_recipe
from codemix.train.stages import read_training_checkpoint, weights_from_checkpoint
from test_train_ddp import LAUNCHERS, STAGE, _curve
from test_train_resume import ENV
from test_train_stages import COOLDOWN, STEP_TOKENS, write_recipe


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun"])  # Lightning's own launch: the kill test below
def test_two_fsdp2_processes_reproduce_the_single_process_run(small_corpus, tmp_path, launcher):
    """Both stages: the init, and a cooldown that continues from its AdamW moments (each rank loads its
    shard of them)."""
    cooldown = {**COOLDOWN, "tokens": 12 * STEP_TOKENS, "micro_batch": 2,  # 8 + 12 = 20 steps
                "init_from": {"ref": "stage:init", "load_optimizer": True}}
    recipe = write_recipe(tmp_path, "fsdp2", small_corpus, {
        "init": {**STAGE, "optimizer": {"lr": 3.0e-3, "grad_clip": 0.5}}, "cool": cooldown})
    single = train_recipe(recipe, home=tmp_path / "one", command="pytest")

    command = [*LAUNCHERS[launcher], "train", "--home", str(tmp_path / "two"), str(recipe),
               "trainer.devices=2", "trainer.strategy=fsdp2"]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for one in single:
        (double,) = (tmp_path / "two" / "runs" / "fsdp2").glob(f"{one.name}-*")
        assert double.name == one.dir.path.name  # the strategy is not part of the identity
        lineage = json.loads((double / "lineage.json").read_text())
        assert lineage["trainer"]["world_size"] == 2 and lineage["trainer"]["strategy"] == "fsdp2"
        assert lineage["tokens_per_source"] == one.lineage.tokens_per_source
        for key in ("train/loss", "val/loss/markup_pydocs"):
            curve_one, curve_two = _curve(one.dir.path, key), _curve(double, key)
            assert len(curve_one) == len(curve_two) > 0
            assert curve_two == pytest.approx(curve_one, rel=1e-4), (one.name, key)
        weights_one = load_file(one.dir.final / "model.safetensors")
        weights_two = load_file(double / "final" / "model.safetensors")
        assert weights_two.keys() == weights_one.keys()
        for name, tensor in weights_one.items():
            torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=1e-4)
    init = single[0].dir
    gathered = load_file(tmp_path / "two" / "runs" / "fsdp2" / init.path.name / "snapshots"
                         / init.snapshot(STAGE["tokens"]).name / "model.safetensors")
    final_two = load_file(tmp_path / "two" / "runs" / "fsdp2" / init.path.name / "final" / "model.safetensors")
    for name, tensor in final_two.items():  # the snapshot at the last step, gathered from the shards
        torch.testing.assert_close(gathered[name], tensor)

    # The weight-decay groups hold the same parameters, by name, as on one rank (a gathered FSDP2 state
    # numbers parameters in model order; one process's in group order).
    cfg, _ = weights_from_checkpoint(init.last_checkpoint)
    model = Decoder(cfg)
    in_model_order = [name for name, _ in model.named_parameters()]
    name_of = {id(param): name for name, param in model.named_parameters()}
    expected = [({name_of[id(p)] for p in group["params"]}, group["weight_decay"])
                for group in parameter_groups(model, single[0].lineage.stage_config["optimizer"]["weight_decay"])]
    saved = read_training_checkpoint(tmp_path / "two" / "runs" / "fsdp2" / init.path.name / "checkpoints" / "last.ckpt")
    (optimizer,) = saved["optimizer_states"]
    assert [({in_model_order[i] for i in group["params"]}, group["weight_decay"])
            for group in optimizer["param_groups"]] == expected
    shapes = dict(model.named_parameters())
    for index, moments in optimizer["state"].items():  # whole moments, gathered from the shards
        assert moments["exp_avg"].shape == shapes[in_model_order[index]].shape


@pytest.mark.slow
def test_a_killed_fsdp2_stage_resumes_from_its_shards_on_the_same_or_another_number_of_ranks(small_corpus, tmp_path):
    """Launched by Lightning on 2 ranks, both SIGKILLed past the step-8 checkpoint, which each rank wrote
    as its own shards (torch.distributed.checkpoint). From copies of those shards the stage resumes on
    2 ranks (bit-identical to an uninterrupted 2-rank run) and re-sharded over 1 FSDP2 rank; each ends
    where the uninterrupted run does. (Merged into one file for a strategy that does not shard:
    test_sharded_checkpoint.py.)"""
    from test_kill_resume import KILL_ENV, STAGES

    recipe = write_recipe(tmp_path, "fsdp2kill", small_corpus, {"init": STAGES["init"]})
    (single,) = train_recipe(recipe, home=tmp_path / "single", command="pytest")
    sharded = ["trainer.devices=2", "trainer.strategy=fsdp2"]

    def train(home: Path, *overrides: str, env: dict[str, str] = ENV, script: list[str] = ["-m", "codemix.cli"]):
        return subprocess.run([sys.executable, *script, "train", "--home", str(home), str(recipe), *overrides],
                              env=env, capture_output=True, text=True, timeout=300)

    straight = train(tmp_path / "straight", *sharded)
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    killer = [str(Path(__file__).with_name("test_kill_resume.py"))]
    killed = train(tmp_path / "two", *sharded, env={**ENV, KILL_ENV: "init:9"}, script=killer)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    (stage,) = (tmp_path / "two" / "runs" / "fsdp2kill").glob("init-*")
    shards = stage / "checkpoints" / "last.ckpt"
    assert shards.is_dir() and (shards / ".metadata").is_file() and (shards / "meta.pt").is_file()
    assert sorted(p.name for p in shards.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]  # one per rank
    shutil.copytree(tmp_path / "two", tmp_path / "one-rank", symlinks=True)

    final = {}
    for home, overrides in (("two", sharded), ("one-rank", ["trainer.devices=1", "trainer.strategy=fsdp2"])):
        done = train(tmp_path / home, *overrides)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        resumed = tmp_path / home / "runs" / "fsdp2kill" / stage.name
        assert f"resuming from {resumed / 'checkpoints' / 'last.ckpt'}" in done.stdout
        assert "merging the sharded checkpoint" not in done.stdout
        lineage = json.loads((resumed / "lineage.json").read_text())
        assert lineage["tokens_per_source"] == single.lineage.tokens_per_source
        assert [p.name for p in (resumed / "checkpoints").iterdir()] == ["last.ckpt"]  # one gathered file
        assert (resumed / "checkpoints" / "last.ckpt").is_file()
        final[home] = load_file(resumed / "final" / "model.safetensors")

    uninterrupted = load_file(tmp_path / "straight" / "runs" / "fsdp2kill" / stage.name / "final" / "model.safetensors")
    assert uninterrupted.keys() == final["two"].keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(final["two"][name], tensor), name  # bit for bit
    for name, tensor in load_file(single.dir.final / "model.safetensors").items():
        torch.testing.assert_close(final["one-rank"][name], tensor, rtol=1e-3, atol=1e-4)
