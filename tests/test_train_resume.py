"""A real `codemix train` SIGKILLed in the middle of a stage, then run again, ends with the same
weights (bit for bit, on CPU) and the same per-source token counts as a run never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from codemix._streaming import sweep_stale_shared_memory
from codemix.train.module import CHECKPOINT_KEY
from codemix.train.resume import resume_checkpoint
from codemix.train.run import train_recipe
from codemix.train.stages import read_metrics, read_training_checkpoint
from test_train_stages import COOLDOWN, INIT, STEP_TOKENS, write_recipe

STEPS = 40
SHORT_INIT = {**INIT, "tokens": 4 * STEP_TOKENS, "val_interval_tokens": 0, "checkpoint_interval_tokens": 0}
LONG_COOLDOWN = {**COOLDOWN, "tokens": STEPS * STEP_TOKENS, "checkpoint_interval_tokens": 5 * STEP_TOKENS,
                 "max_passes": 4.0}
# One intra-op thread, as in the pytest process: on a loaded 2-core machine two spinning OpenMP
# threads per process slow tiny models down many times over.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def codemix_train(recipe: Path, home: Path) -> subprocess.Popen:
    """Start `codemix train`; its output goes to home/train.log (a pipe nobody reads would block it)."""
    home.mkdir(exist_ok=True)
    with open(home / "train.log", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "codemix.cli", "train", "--home", str(home), str(recipe)],
                                stdout=log, stderr=subprocess.STDOUT, env=ENV)


def finish(process: subprocess.Popen, home: Path) -> str:
    process.wait(timeout=300)
    out = (home / "train.log").read_text()
    assert process.returncode == 0, out[-5000:]
    return out


def stage_dir(home: Path, stage: str) -> Path:
    (path,) = (home / "runs" / "resume").glob(f"{stage}-*")
    return path


def kill_after_first_checkpoint(process: subprocess.Popen, home: Path) -> int:
    """SIGKILL the run as soon as the cooldown stage has a checkpoint; returns the step it holds."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = list((home / "runs" / "resume").glob("cooldown-*/checkpoints/last.ckpt"))
        if found:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return read_training_checkpoint(found[0])["global_step"]
        time.sleep(0.002)
    raise AssertionError(f"no cooldown checkpoint appeared (exit code {process.poll()})")


def test_killed_run_resumes_to_identical_weights_and_token_counts(small_corpus, tmp_path):
    recipe = write_recipe(tmp_path, "resume", small_corpus, {"init": SHORT_INIT, "cooldown": LONG_COOLDOWN})
    straight_home, killed_home = tmp_path / "straight", tmp_path / "killed"
    train_recipe(recipe, home=straight_home, command="pytest")  # in this process: one start fewer
    step = kill_after_first_checkpoint(codemix_train(recipe, killed_home), killed_home)
    cooldown = stage_dir(killed_home, "cooldown")
    assert 0 < step < STEPS and not (cooldown / "lineage.json").exists(), "the kill must land mid-stage"
    sweep_stale_shared_memory()  # what the killed job left in /dev/shm, and only that

    out = finish(codemix_train(recipe, killed_home), killed_home)
    assert "stage init [" in out and "complete, reusing" in out
    assert f"resuming from {cooldown / 'checkpoints' / 'last.ckpt'}" in out

    expected = stage_dir(straight_home, "cooldown")
    weights, resumed = (load_file(d / "final" / "model.safetensors") for d in (expected, cooldown))
    assert weights.keys() == resumed.keys()
    assert all(torch.equal(weights[k], resumed[k]) for k in weights)
    lineages = [json.loads((d / "lineage.json").read_text()) for d in (expected, cooldown)]
    assert lineages[0]["tokens_per_source"] == lineages[1]["tokens_per_source"]
    assert [a["resumed_from"] is not None for a in lineages[1]["attempts"]] == [False, True]
    assert [int(r["step"]) for r in read_metrics(cooldown / "metrics.csv") if r.get("train/loss")] == list(range(STEPS))
    assert not [p for p in os.listdir(cooldown / "checkpoints") if p != "last.ckpt"]


def _checkpoint(step: int, samples: int) -> dict:
    """The parts of a codemix training checkpoint that the choice of where to resume reads."""
    return {"global_step": step, CHECKPOINT_KEY: {}, "MixtureDataModule": {"streaming": {"sample_in_epoch": samples}}}


def test_unusable_checkpoints_are_set_aside_and_the_stage_restarts(tmp_path, capsys):
    """Torn last.ckpt -> previous.ckpt; a checkpoint saved inside an accumulation (the loader one
    micro-batch past the step, as Lightning's ModelCheckpoint wrote after a resume) is refused too."""
    last, previous = tmp_path / "last.ckpt", tmp_path / "previous.ckpt"
    torch.save(_checkpoint(4, 4 * 8), last)
    torch.save(_checkpoint(2, 2 * 8), previous)
    last.write_bytes(last.read_bytes()[:100])
    assert resume_checkpoint(last, global_batch=8) == previous
    assert f"codemix: warning: {last} is unreadable" in capsys.readouterr().err

    torch.save(_checkpoint(5, 5 * 8 + 4), previous)  # step 5, but 5.5 steps of samples
    assert resume_checkpoint(last, global_batch=8) is None  # nothing usable: the stage starts afresh
    assert "holds step 5 with the loader at sample 44, not 40 (saved inside a gradient accumulation)" in \
        capsys.readouterr().err
    assert not last.exists() and not previous.exists()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["last.ckpt.unusable", "previous.ckpt.unusable"]
