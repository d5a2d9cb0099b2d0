"""Training dynamics on a real two-stage arm trained here with snapshots: `codemix eval STAGE
--checkpoints all` writes one results file per snapshot beside final/'s and reuses the ones that scored
the same weights; the report and the checkpoint notebook follow the arm's scores through training."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from test_notebooks import _text, execute, venv_kernel  # noqa: F401 - venv_kernel is a fixture
from test_train_stages import STEP_TOKENS, write_recipe

from codemix.analysis.dynamics import dynamics_lines
from codemix.analysis.report import build_report
from codemix.cli import main
from codemix.eval.results import Target, resolve_target, scored_alike, stage_checkpoints
from codemix.eval.runner import EvalOptions
from codemix.hashing import file_sha256
from codemix.runs.layout import StageDir
from codemix.train.run import train_recipe

PNG = b"\x89PNG"
# 6 steps with a snapshot every 2 (the one at step 6 is final/'s weights), then a 2-step cooldown with
# one every step.
INIT = {"tokens": 6 * STEP_TOKENS, "mixture": {"code": 0.5, "text": 0.5}, "init_from": {"ref": "scratch"},
        "snapshot_interval_tokens": 2 * STEP_TOKENS}
COOLDOWN = {"tokens": 2 * STEP_TOKENS, "mixture": {"text": 0.8, "code": 0.2}, "init_from": {"ref": "stage:init"},
            "schedule": {"kind": "linear", "warmup": 0, "final_lr": 1.0e-6}, "snapshot_interval_tokens": STEP_TOKENS}
TASKS = ["copa", "piqa"]
EVAL = ["--tasks", ",".join(TASKS), "--limit", "4", "--heldout-samples", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def arm(small_corpus, tmp_path_factory) -> tuple[Path, StageDir, StageDir]:
    """(home, init, cooldown): the arm trained once, then every checkpoint of both stages scored."""
    folder = tmp_path_factory.mktemp("dynamics")
    recipe = write_recipe(folder, "dyn", small_corpus, {"init": INIT, "cooldown": COOLDOWN})
    home = folder / "home"
    init, cooldown = (result.dir for result in train_recipe(recipe, home=home, command="pytest"))
    for stage in (init, cooldown):
        assert main(["eval", str(stage.path), "--checkpoints", "all", *EVAL]) == 0
    return home, init, cooldown


def _results(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_snapshot_and_final_is_scored_beside_the_stage_s_results(arm):
    _, init, cooldown = arm
    scored = sorted(p.name for p in (init.path / "eval" / "snapshots").iterdir())
    # the step-6 snapshot holds final/'s weights: scored once, as final/ (eval/results.json)
    assert scored == [f"{init.snapshot(n * STEP_TOKENS).name}.json" for n in (2, 4)]
    assert sorted(p.name for p in init.snapshots.iterdir())[-1] == init.snapshot(6 * STEP_TOKENS).name
    assert [p.name for p in (cooldown.path / "eval" / "snapshots").iterdir()] == [f"{cooldown.snapshot(STEP_TOKENS).name}.json"]
    identity = init.lineage().identity
    for steps in (2, 4):
        snapshot = init.snapshot(steps * STEP_TOKENS)
        results = _results(init.snapshot_results(steps * STEP_TOKENS))
        assert results["checkpoint"]["kind"] == "snapshot" and results["checkpoint"]["identity"] == identity
        assert results["checkpoint"]["tokens"] == steps * STEP_TOKENS
        assert results["checkpoint"]["sha256"] == file_sha256(snapshot / "model.safetensors")
        assert sorted(results["tasks"]) == TASKS and results["options"]["limit"] == 4
        assert set(results["heldout"]["sources"]) >= {"code_python", "text_jargon"}
        # evaluating the snapshot folder on its own writes to the same place
        assert resolve_target(snapshot).default_results == init.snapshot_results(steps * STEP_TOKENS)
    assert _results(init.results)["checkpoint"]["kind"] == "stage"
    # training moves the scores: held-out bits per byte fall from the first snapshot to final/
    first, final = (_results(path)["heldout"]["sources"] for path in (init.snapshot_results(2 * STEP_TOKENS), init.results))
    assert sum(s["bits_per_byte"] for s in final.values()) < sum(s["bits_per_byte"] for s in first.values())


def test_scored_checkpoints_are_reused_and_changed_weights_scored_again(arm, tmp_path, capsys):
    _, init, _ = arm
    copy = tmp_path / init.path.name  # a copy without results: its own weights, scored afresh
    shutil.copytree(init.path, copy, ignore=shutil.ignore_patterns("eval"))
    assert main(["eval", str(copy), "--checkpoints", "all", *EVAL]) == 0
    assert "reusing" not in capsys.readouterr().err
    files = sorted((copy / "eval").rglob("*.json"))
    assert len(files) == 3
    mtimes = [p.stat().st_mtime_ns for p in files]

    assert main(["eval", str(copy), "--checkpoints", "all", *EVAL]) == 0
    err = capsys.readouterr().err
    assert err.count("reusing") == 3 and "[1/2] copa" not in err
    assert [p.stat().st_mtime_ns for p in files] == mtimes

    # other weights in the middle snapshot: only it is scored again
    middle = StageDir(copy).snapshot(4 * STEP_TOKENS)
    shutil.copyfile(StageDir(copy).snapshot(2 * STEP_TOKENS) / "model.safetensors", middle / "model.safetensors")
    assert main(["eval", str(copy), "--checkpoints", "all", *EVAL]) == 0
    assert capsys.readouterr().err.count("reusing") == 2
    rescored = _results(StageDir(copy).snapshot_results(4 * STEP_TOKENS))["checkpoint"]
    assert rescored["sha256"] == file_sha256(middle / "model.safetensors")
    assert rescored["weights"] == str(middle / "model.safetensors")


def test_reuse_needs_the_same_weights_options_and_tasks(arm):
    _, init, _ = arm
    target = stage_checkpoints(init.path)[0]
    options = EvalOptions(limit=4).recorded()
    assert scored_alike(target, options, TASKS)
    assert not scored_alike(target, EvalOptions(limit=5).recorded(), TASKS)
    assert not scored_alike(target, EvalOptions(limit=4, num_fewshot=1).recorded(), TASKS)
    assert not scored_alike(target, options, ["copa"])
    assert not scored_alike(Target(target.weights_dir, None, init.path / "eval" / "missing.json"), options, TASKS)


def test_checkpoints_all_needs_a_stage_and_its_own_results_paths(arm, tmp_path, capsys):
    _, init, _ = arm
    assert main(["eval", str(init.path), "--checkpoints", "all", "--out", str(tmp_path / "r.json"), *EVAL]) == 2
    assert "--checkpoints all writes one results file per checkpoint" in capsys.readouterr().err
    snapshot = init.snapshot(2 * STEP_TOKENS)
    assert main(["eval", str(snapshot), "--checkpoints", "all", *EVAL]) == 2
    assert "not a stage directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error
        main(["eval", str(init.path), "--checkpoints", "some"])
    assert "invalid choice: 'some'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_the_report_follows_the_arm_through_its_checkpoints(arm, tmp_path):
    home, init, cooldown = arm
    out = tmp_path / "report"
    build_report([home / "runs"], out)
    with open(out / "dynamics.csv", newline="") as src:
        rows = list(csv.DictReader(src))
    assert [(r["stage"], r["checkpoint"], int(r["tokens"])) for r in rows] == [
        ("init", init.snapshot(2 * STEP_TOKENS).name, 2 * STEP_TOKENS),
        ("init", init.snapshot(4 * STEP_TOKENS).name, 4 * STEP_TOKENS),
        ("init", "final", 6 * STEP_TOKENS),
        ("cooldown", cooldown.snapshot(STEP_TOKENS).name, 7 * STEP_TOKENS),  # after init's 6 steps
        ("cooldown", "final", 8 * STEP_TOKENS)]
    final = _results(init.results)
    assert float(rows[2]["reasoning_bpb"]) == pytest.approx(final["aggregate_bpb"]["reasoning"]["score"])
    assert rows[2]["reasoning_pct"] == f"{100 * final['aggregate']['reasoning']['score']:.1f}"
    assert json.loads(rows[0]["heldout_bpb"]).keys() >= {"code_python", "text_jargon"}
    markdown = (out / "report.md").read_text()
    assert "## Training dynamics" in markdown and "(3 snapshots scored by `codemix eval STAGE --checkpoints all`" in markdown
    assert "| dyn | 5 | 2K -> 8.19K |" in markdown
    assert "(figures/dynamics.png)" in markdown
    assert (out / "figures" / "dynamics.png").read_bytes().startswith(PNG)


def test_without_scored_snapshots_the_section_says_how_to_get_them():
    assert "No snapshot was scored. `codemix eval STAGE --checkpoints all`" in "\n".join(dynamics_lines({}, None))


def test_the_checkpoint_notebook_draws_the_arm_s_dynamics(arm, venv_kernel, monkeypatch):  # noqa: F811
    home, init, _ = arm
    monkeypatch.delenv("CODEMIX_STAGES", raising=False)
    notebook = execute("checkpoint_analysis.ipynb", venv_kernel, monkeypatch, CODEMIX_HOME=str(home),
                       CODEMIX_RUNS_DIR=str(home / "runs"))
    text = _text(notebook)
    assert "training dynamics: 5 scored checkpoints (3 snapshots) along 1 arm(s)" in text
    assert init.snapshot(4 * STEP_TOKENS).name in text and "image/png" in text
