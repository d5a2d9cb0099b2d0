"""Trainings beside each other and beside a killed one's leftovers (issue 11, defect 10): mosaicml-
streaming's shared-memory names were drawn by every process on the machine from one sequence, so two
runs could share an epoch counter and shard states and wait forever. Each job now has its own namespace
(codemix._streaming): two `codemix train` started at the same moment on the same corpus both finish,
and a run killed with -9 has its segments swept by the next one."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codemix._streaming import SHM
from test_kill_resume import ENV
from test_train_stages import INIT, STEP_TOKENS, write_recipe

STAGE = {**INIT, "tokens": 4 * STEP_TOKENS, "val_interval_tokens": 0, "checkpoint_interval_tokens": 0}


def start(recipe: Path, home: Path) -> subprocess.Popen:
    """`codemix train` in a session of its own, so that it can be killed with its helpers (Python's
    resource tracker would otherwise unlink the killed run's shared memory)."""
    home.mkdir(exist_ok=True)
    with open(home / "train.log", "a") as log:
        return subprocess.Popen([sys.executable, "-m", "codemix.cli", "train", "--home", str(home), str(recipe)],
                                stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def leftovers_of(pid: int) -> list[Path]:
    """The shared memory and lock files of the job whose namespace process `pid` owned."""
    return [path for folder in (SHM, Path(tempfile.gettempdir())) for path in folder.iterdir()
            if path.name.startswith(f"codemix{pid}-")]


@pytest.mark.slow
def test_two_trainings_at_once_beside_a_killed_ones_leftovers(small_corpus, tmp_path):
    recipe = write_recipe(tmp_path, "beside", small_corpus, {"init": STAGE})
    killed = start(recipe, tmp_path / "killed")
    while not leftovers_of(killed.pid) and killed.poll() is None:  # until its loader is open
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, (tmp_path / "killed" / "train.log").read_text()[-3000:]
    left = leftovers_of(killed.pid)
    assert left, "a job killed with -9 while its loader is open leaves its shared memory"

    runs = {name: start(recipe, tmp_path / name) for name in ("first", "second")}  # at the same moment
    for name, run in runs.items():
        # a guard against a hang, not a timing assertion: a healthy run takes seconds
        assert run.wait(timeout=600) == 0, (tmp_path / name / "train.log").read_text()[-5000:]
    assert not [path for path in left if path.exists()], "the killed run's leftovers were swept"

    weights = [load_file(next((tmp_path / name / "runs" / "beside").glob("init-*/final/model.safetensors")))
               for name in runs]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
