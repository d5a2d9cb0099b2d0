"""FSDP2 through Lightning's ModelParallelStrategy: two gloo processes on CPU, launched by Lightning from
a real `codemix train` and by torchrun, shard every block and the root, and reproduce the one-process
run (loss curve, token counts, final weights) for the same global batch, weight decay and clipping
included."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codemix.train.run import train_recipe
from test_train_ddp import LAUNCHERS, STAGE, _curve
from test_train_resume import ENV
from test_train_stages import write_recipe


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun"])  # Lightning's own launch: the kill test below
def test_two_fsdp2_processes_reproduce_the_single_process_run(small_corpus, tmp_path, launcher):
    recipe = write_recipe(tmp_path, "fsdp2", small_corpus, {"init": {**STAGE, "optimizer": {"lr": 3.0e-3, "grad_clip": 0.5}}})
    (single,) = train_recipe(recipe, home=tmp_path / "one", command="pytest")

    command = [*LAUNCHERS[launcher], "train", "--home", str(tmp_path / "two"), str(recipe),
               "trainer.devices=2", "trainer.strategy=fsdp2"]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (double,) = (tmp_path / "two" / "runs" / "fsdp2").glob("init-*")
    assert double.name == single.dir.path.name  # the strategy is not part of the identity

    lineage = json.loads((double / "lineage.json").read_text())
    assert lineage["trainer"]["world_size"] == 2 and lineage["trainer"]["strategy"] == "fsdp2"
    assert lineage["tokens_per_source"] == single.lineage.tokens_per_source
    for key in ("train/loss", "val/loss/markup_pydocs"):
        one, two = _curve(single.dir.path, key), _curve(double, key)
        assert len(one) == len(two) > 0
        assert two == pytest.approx(one, rel=1e-4), key
    weights_one = load_file(single.dir.final / "model.safetensors")
    weights_two = load_file(double / "final" / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    gathered = load_file(double / "snapshots" / single.dir.snapshot(STAGE["tokens"]).name / "model.safetensors")
    for name, tensor in weights_two.items():  # the snapshot at the last step, gathered from the shards
        torch.testing.assert_close(gathered[name], tensor)
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("resume_devices", [1])  # [2, 1] both pass; one keeps the suite short
def test_a_killed_fsdp2_stage_resumes_on_the_same_or_another_number_of_ranks(small_corpus, tmp_path, resume_devices):
    """Launched by Lightning on 2 ranks, both SIGKILLed past the step-8 checkpoint; the stage resumes
    from that (gathered) checkpoint on 2 ranks or on 1 and ends where the uninterrupted run does."""
    from test_kill_resume import KILL_ENV, STAGES

    recipe = write_recipe(tmp_path, "fsdp2kill", small_corpus, {"init": STAGES["init"]})
    (single,) = train_recipe(recipe, home=tmp_path / "straight", command="pytest")
    home = tmp_path / "killed"
    sharded = ["trainer.devices=2", "trainer.strategy=fsdp2"]
    killer = Path(__file__).with_name("test_kill_resume.py")
    killed = subprocess.run([sys.executable, str(killer), "train", "--home", str(home), str(recipe), *sharded],
                            env={**ENV, KILL_ENV: "init:9"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    again = sharded if resume_devices == 2 else ["trainer.devices=1"]
    done = subprocess.run([sys.executable, "-m", "codemix.cli", "train", "--home", str(home), str(recipe), *again],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from" in done.stdout
    (resumed,) = (home / "runs" / "fsdp2kill").glob("init-*")
    lineage = json.loads((resumed / "lineage.json").read_text())
    assert lineage["tokens_per_source"] == single.lineage.tokens_per_source
    weights_one = load_file(single.dir.final / "model.safetensors")
    weights_two = load_file(resumed / "final" / "model.safetensors")
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=1e-4)
