"""Scale-out through Lightning's strategies: two DDP processes on CPU (gloo), launched by Lightning itself
from a real `codemix train` and by the real torchrun, reproduce the one-process loss curve for the same
global batch; the weights-only snapshot taken mid-stage matches too."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from codemix.train.run import train_recipe
from codemix.train.stages import read_metrics
from test_train_resume import ENV
from test_train_stages import INIT, STEP_TOKENS, write_recipe

STEPS = 8
STAGE = {**INIT, "tokens": STEPS * STEP_TOKENS, "micro_batch": 2, "val_interval_tokens": 4 * STEP_TOKENS,
         "checkpoint_interval_tokens": 0}


LAUNCHERS = {
    "lightning": [sys.executable, "-m", "codemix.cli"],
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "codemix.cli"],
}


def _curve(stage_dir, key: str) -> list[float]:
    return [float(row[key]) for row in read_metrics(stage_dir / "metrics.csv") if row.get(key)]


@pytest.mark.parametrize("launcher", ["lightning", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_two_ddp_processes_reproduce_the_single_process_run(small_corpus, tmp_path, launcher):
    recipe = write_recipe(tmp_path, "ddp", small_corpus, {"init": STAGE})
    (single,) = train_recipe(recipe, home=tmp_path / "one", command="pytest")  # 4 micro-batches a step

    command = [*LAUNCHERS[launcher], "train", "--home", str(tmp_path / "two"), str(recipe),
               "trainer.devices=2", "trainer.strategy=ddp"]  # 2 micro-batches a step on each of 2 ranks
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (double,) = (tmp_path / "two" / "runs" / "ddp").glob("init-*")
    assert double.name == single.dir.path.name  # devices and micro batch are not part of the identity

    lineage = json.loads((double / "lineage.json").read_text())
    assert lineage["trainer"]["world_size"] == 2 and lineage["completed"] is True
    assert lineage["tokens_per_source"] == single.lineage.tokens_per_source  # counted over both ranks
    for key in ("train/loss", "train/loss/code_python", "train/loss/text_jargon", "val/loss/markup_pydocs"):
        one, two = _curve(single.dir.path, key), _curve(double, key)
        assert len(one) == len(two) > 0
        assert two == pytest.approx(one, rel=1e-5), key
    assert len(_curve(double, "train/loss")) == STEPS
    snapshot = single.dir.snapshot(STEPS * STEP_TOKENS).relative_to(single.dir.path) / "model.safetensors"
    weights_one = load_file(single.dir.final / "model.safetensors")
    weights_two = load_file(double / "final" / "model.safetensors")
    assert load_file(double / snapshot).keys() == weights_one.keys()
    for name, tensor in weights_one.items():
        # Adam divides by sqrt(second moment): a last-bit gradient difference can move a weight ~1e-5.
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=1e-4)
