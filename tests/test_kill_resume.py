"""A real `codemix train` SIGKILLed at k >= 3 seeded points across a two-stage arm (twice in one stage,
and inside a gradient accumulation), run again after each kill, ends bit-identical to a run never
interrupted: final weights of every stage and the lineage's token counts.

The kill points are exact: run as a script, this file starts `codemix train` in-process with the loader
wrapped so that the process sends itself SIGKILL when the stage named in CODEMIX_TEST_KILL_AT
("<stage>:<micro-batch>") is about to draw that micro-batch (counted from the stage's start, so a
resumed process dies at the same place in the stage as intended). Nothing else is changed."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

KILL_ENV = "CODEMIX_TEST_KILL_AT"


def _run_killable(argv: list[str]) -> int:
    from codemix.cli import main
    from codemix.data.datamodule import StageLoader
    from codemix.train.run import StageTraining

    stage_name, micro_batch = os.environ[KILL_ENV].split(":")
    current = {"stage": ""}
    run, draw = StageTraining.run, StageLoader.__iter__

    def run_noting_stage(self, home):
        current["stage"] = self.name
        return run(self, home)

    def draw_until_killed(self):
        done = int((self._loaded_position or {}).get("sample_in_epoch", 0)) // self.batch_size
        for index, batch in enumerate(draw(self), start=done):
            if current["stage"] == stage_name and index == int(micro_batch):
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    StageTraining.run, StageLoader.__iter__ = run_noting_stage, draw_until_killed
    return main(argv)


if __name__ == "__main__":
    sys.exit(_run_killable(sys.argv[1:]))


# ---- the tests ----------------------------------------------------------------------------------
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from codemix.train.run import train_recipe  # noqa: E402
from codemix.train.stages import read_metrics  # noqa: E402
from test_train_stages import COOLDOWN, GLOBAL, INIT, MICRO, STEP_TOKENS, write_recipe  # noqa: E402

ACCUMULATION = GLOBAL // MICRO
EVERY = 2  # optimizer steps between checkpoints
STAGES = {
    "init": {**INIT, "tokens": 12 * STEP_TOKENS, "val_interval_tokens": 0, "checkpoint_interval_tokens": EVERY * STEP_TOKENS},
    "cooldown": {**COOLDOWN, "tokens": 6 * STEP_TOKENS, "checkpoint_interval_tokens": EVERY * STEP_TOKENS},
}
MICRO_BATCHES = {name: stage["tokens"] // STEP_TOKENS * ACCUMULATION for name, stage in STAGES.items()}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # as in the pytest process (tests/conftest.py)


INTERVAL = EVERY * ACCUMULATION  # micro-batches between checkpoints
# The defect's case: killed inside an accumulation after the checkpoint at micro-batch 4, resumed there,
# killed again inside an accumulation before the next checkpoint (Lightning's ModelCheckpoint had
# rewritten step 2 after the resumed run's first micro-batch), then once more in the next stage.
WORST_CASE = [("init", INTERVAL + 1), ("init", INTERVAL + 3), ("cooldown", 3)]


def kill_points(seed: int) -> list[tuple[str, int]]:
    """Three kills from `seed`: in init inside an accumulation past its first checkpoint; in init again
    after that kill's resume point (before or after the next checkpoint); anywhere in cooldown."""
    rng = random.Random(seed)
    first = rng.randrange(INTERVAL + 1, MICRO_BATCHES["init"] - INTERVAL, ACCUMULATION)
    resumed_at = first // INTERVAL * INTERVAL
    second = rng.randrange(resumed_at + 2, min(resumed_at + 2 * INTERVAL, MICRO_BATCHES["init"]))
    return [("init", first), ("init", second), ("cooldown", rng.randrange(1, MICRO_BATCHES["cooldown"]))]


def codemix_train(recipe: Path, home: Path, kill_at: tuple[str, int] | None) -> int:
    env = {**ENV, KILL_ENV: f"{kill_at[0]}:{kill_at[1]}"} if kill_at else ENV
    command = [__file__] if kill_at else ["-m", "codemix.cli"]
    with open(home / "train.log", "a") as log:
        return subprocess.run([sys.executable, *command, "train", "--home", str(home), str(recipe)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600).returncode


def stage_dirs(home: Path, recipe_name: str) -> dict[str, Path]:
    return {path.name.split("-")[0]: path for path in (home / "runs" / recipe_name).iterdir()}


def assert_same_training(straight: dict[str, Path], killed: dict[str, Path]) -> None:
    for name in STAGES:
        expected, resumed = (load_file(d[name] / "final" / "model.safetensors") for d in (straight, killed))
        assert expected.keys() == resumed.keys()
        assert all(torch.equal(expected[k], resumed[k]) for k in expected), f"stage {name}: weights differ"
        lineages = [json.loads((d[name] / "lineage.json").read_text()) for d in (straight, killed)]
        for key in ("tokens", "tokens_per_source", "cumulative_tokens_per_source", "steps", "final_metrics"):
            assert lineages[0][key] == lineages[1][key], f"stage {name}: {key} differs"
        assert lineages[1]["final_metrics"], "final_metrics must never be empty"
        steps = [int(r["step"]) for r in read_metrics(killed[name] / "metrics.csv") if r.get("train/loss")]
        assert steps == list(range(lineages[0]["steps"]))
        assert os.listdir(killed[name] / "checkpoints") == ["last.ckpt"]  # no temporaries, no previous.ckpt
        snapshots = [sorted(p.name for p in (d[name] / "snapshots").glob("*")) for d in (straight, killed)]
        assert snapshots[0] == snapshots[1], f"stage {name}: snapshots differ"  # none lost, none twice, no temporaries
        assert snapshots[0] or not STAGES[name].get("snapshot_interval_tokens"), f"stage {name}: no snapshot taken"
        for snapshot in snapshots[0]:
            taken = [load_file(d[name] / "snapshots" / snapshot / "model.safetensors") for d in (straight, killed)]
            assert all(torch.equal(taken[0][k], taken[1][k]) for k in taken[0]), f"{name}/{snapshot} differs"


@pytest.fixture(scope="module")
def straight(small_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """The arm trained once without interruption: (recipe, home)."""
    folder = tmp_path_factory.mktemp("straight")
    recipe = write_recipe(folder, "kills", small_corpus, STAGES)
    train_recipe(recipe, home=folder / "home", command="pytest")
    return recipe, folder / "home"


def kill_and_resume(straight: tuple[Path, Path], folder: Path, kill_plans: dict[str, list[tuple[str, int]]]) -> None:
    recipe, straight = straight
    for label, points in kill_plans.items():
        home = folder / f"killed-{label}"
        home.mkdir()
        for point in points:
            assert codemix_train(recipe, home, point) == -signal.SIGKILL, (point, (home / "train.log").read_text()[-3000:])
        assert codemix_train(recipe, home, None) == 0, (home / "train.log").read_text()[-5000:]
        log = (home / "train.log").read_text()
        assert log.count("resuming from") >= len(points) - 1, log[-5000:]
        assert_same_training(stage_dirs(straight, "kills"), stage_dirs(home, "kills"))


def test_points_include_two_kills_in_a_stage_and_one_inside_an_accumulation():
    for points in [WORST_CASE, *(kill_points(seed) for seed in range(20))]:
        assert len(points) >= 3 and [stage for stage, _ in points].count("init") == 2
        assert points[0][1] % ACCUMULATION and points[1][1] > points[0][1] // INTERVAL * INTERVAL


def test_three_kills_resume_to_identical_weights_and_tokens(straight, tmp_path):
    kill_and_resume(straight, tmp_path, {"worst-case": WORST_CASE})


@pytest.mark.slow
def test_kills_at_seeded_random_points(straight, tmp_path):
    kill_and_resume(straight, tmp_path, {f"seed-{seed}": kill_points(seed) for seed in (1, 2)})


@pytest.mark.slow
def test_a_truncated_last_checkpoint_is_set_aside_and_the_previous_one_resumed(straight, tmp_path):
    recipe, straight_home = straight
    home = tmp_path / "home"
    home.mkdir()
    assert codemix_train(recipe, home, ("init", 2 * INTERVAL + 1)) == -signal.SIGKILL  # checkpoints at 2, 4
    checkpoints = stage_dirs(home, "kills")["init"] / "checkpoints"
    last = checkpoints / "last.ckpt"
    torn = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(torn)  # as a disk that filled up, or a copy cut short, leaves it

    assert codemix_train(recipe, home, None) == 0, (home / "train.log").read_text()[-5000:]
    log = (home / "train.log").read_text()
    (aside,) = checkpoints.parent.glob("checkpoints/last.ckpt.unusable-*")
    assert aside.read_bytes() == torn  # renamed, never deleted
    assert f"codemix: warning: {last} is unreadable" in log and f"set aside as {aside.name}" in log
    assert f"resuming from {checkpoints / 'previous.ckpt'}" in log
    dirs = stage_dirs(home, "kills")
    expected = load_file(stage_dirs(straight_home, "kills")["cooldown"] / "final" / "model.safetensors")
    resumed = load_file(dirs["cooldown"] / "final" / "model.safetensors")
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
