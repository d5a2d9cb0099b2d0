"""FSDP2 through Lightning's ModelParallelStrategy: two gloo processes on CPU, launched by Lightning from
a real `codemix train` and by torchrun, shard every block and the root, and reproduce the one-process
run (loss curve, token counts, final weights) for the same global batch, weight decay and clipping
included."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from codemix.train.run import train_recipe
from test_train_ddp import STAGE, _curve
from test_train_resume import ENV
from test_train_stages import write_recipe


LAUNCHERS = {
    "lightning": [sys.executable, "-m", "codemix.cli"],
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "codemix.cli"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
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
    assert lineage["tokens_per_source"] == single.lineage["tokens_per_source"]
    for key in ("train/loss", "val/loss/markup_pydocs"):
        one, two = _curve(single.dir.path, key), _curve(double, key)
        assert len(one) == len(two) > 0
        assert two == pytest.approx(one, rel=1e-4), key
    weights_one = load_file(single.dir.final / "model.safetensors")
    weights_two = load_file(double / "final" / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=1e-4)
