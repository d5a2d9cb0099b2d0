"""`codemix reproduce`: the smoke study end to end (interrupted, resumed, repeated; see
reproduce_fixtures.py), and its up-front checks on recipe directories."""

import csv
import json
from pathlib import Path

import pytest

from codemix.study.driver import Settings, is_current, plan_study, recipe_files, study_dir
from codemix.cli import main
from codemix.config.recipe import load_recipe
from codemix.errors import ConfigError
from codemix.eval.harness import evaluate
from codemix.eval.results import resolve_target
from codemix.eval.runner import EvalOptions
from codemix.eval.tasks.registry import SUITES, resolve_tasks
from codemix.study.eval_workers import default_workers
from reproduce_fixtures import REPO, Reproduction

SMOKE_ARMS = {
    # arm -> its stages; the cooldown-without-code arm shares init and cpt with balanced-to-text
    "tiny-smoke-text-only": ["pt", "cooldown"],
    "tiny-smoke-balanced-to-text": ["init", "cpt", "cooldown"],
    "tiny-smoke-balanced-to-text-cooldown-text": ["init", "cpt", "cooldown"],
    # Fig 4's sweep (its 50% point is balanced-to-text's init) and Fig 5's quality arms
    "tiny-smoke-sweep-code-0": ["pt"],
    "tiny-smoke-sweep-code-50": ["pt"],
    "tiny-smoke-quality-web": ["pt"],
    "tiny-smoke-quality-markup": ["pt"],
}
DISTINCT_STAGES = 9
SMOKE = REPO / "recipes" / "tiny" / "smoke"


def smoke_tokens() -> int:
    """Tokens of the smoke study's distinct stages, from its recipes: every stage of text_only,
    balanced_to_text, the 0% sweep point and the quality arms, and the cooldown of
    balanced_to_text_cooldown_text (its other stages are shared, as is the 50% sweep point's)."""
    own = {"text_only": None, "balanced_to_text": None, "balanced_to_text_cooldown_text": "cooldown",
           "sweep_code_0": None, "quality_web": None, "quality_markup": None}
    return sum(stage.tokens for name, only in own.items()
               for stage_name, stage in load_recipe(SMOKE / f"{name}.yaml").stages.items() if only in (None, stage_name))


def _lineage(stage: Path) -> dict:
    return json.loads((stage / "lineage.json").read_text())


def _attempts(stage: Path) -> int:
    return len(json.loads((stage / "attempts.json").read_text())["attempts"])


def test_ctrl_c_stops_the_run_and_says_how_to_continue(smoke_reproduction: Reproduction):
    run = smoke_reproduction.interrupted
    assert run.returncode == 130, run.output[-3000:]
    assert "run the same command again to continue" in run.output
    assert smoke_reproduction.completed_when_interrupted, "the run was interrupted after its first stage completed"
    assert len(smoke_reproduction.completed_when_interrupted) < DISTINCT_STAGES
    assert "[eval " not in run.output and "report: " not in run.output


def test_rerun_keeps_completed_stages_and_finishes(smoke_reproduction: Reproduction):
    run = smoke_reproduction.resumed
    assert run.returncode == 0, run.output[-3000:]
    for identity in smoke_reproduction.completed_when_interrupted:
        stage = smoke_reproduction.stage_index / identity
        assert f"[{identity}]: complete, reusing" in run.output
        assert _attempts(stage) == 1, f"{stage} was trained again"
    assert f"[{DISTINCT_STAGES}/{DISTINCT_STAGES}]" in run.output  # progress counts distinct stages


def test_shared_stages_train_once(smoke_reproduction: Reproduction):
    runs = smoke_reproduction.home / "runs"
    identities = sorted(entry.name for entry in smoke_reproduction.stage_index.iterdir())
    assert len(identities) == DISTINCT_STAGES
    for arm, stages in SMOKE_ARMS.items():
        found = {path.name.rsplit("-", 1)[0]: path for path in (runs / arm).iterdir()}
        assert sorted(found) == sorted(stages), arm
        assert all(_lineage(path)["identity"] in identities for path in found.values())
    cooldown_text = runs / "tiny-smoke-balanced-to-text-cooldown-text"
    shared = [path for path in cooldown_text.iterdir() if not path.name.startswith("cooldown")]
    assert shared and all(path.is_symlink() for path in shared)  # init and cpt: linked, not retrained
    assert sum(_lineage(runs / "_stages" / i)["tokens"] for i in identities) == smoke_tokens()


def test_every_distinct_stage_is_evaluated_once(smoke_reproduction: Reproduction):
    for identity in smoke_reproduction.stage_index.iterdir():
        results = json.loads((identity / "eval" / "results.json").read_text())
        assert results["checkpoint"]["identity"] == identity.name
        assert results["options"]["limit"] == 2
        assert sorted({*results["tasks"], *results["failed"]}) == sorted(SUITES["paper"])
        assert not results["failed"], results["failed"]
        assert {entry["kind"] for entry in results["heldout"]["sources"].values()} >= {"text", "code"}
        assert results["command"][:3] == ["codemix", "reproduce", "recipes/tiny"]


def test_evaluations_in_worker_processes_equal_one_in_this_process(smoke_reproduction: Reproduction, tmp_path):
    summary = json.loads((smoke_reproduction.report / "reproduce.json").read_text())
    assert summary["eval"]["workers"] == default_workers()  # 2 on the 2-core machines the suite runs on
    assert "evaluations on" in smoke_reproduction.resumed.output or default_workers() == 1
    stage = sorted(smoke_reproduction.stage_index.iterdir())[0]
    pooled = json.loads((stage / "eval" / "results.json").read_text())
    settings = Settings.for_run(smoke=True, limit=None)
    here = evaluate(resolve_target(stage), resolve_tasks("paper", None), EvalOptions(**settings.eval_options), ["test"],
                    out=tmp_path / "results.json", heldout_samples=settings.heldout_samples, progress=lambda line: None)

    def scores(results: dict) -> dict:
        return {name: (task["score"], task["metrics"]) for name, task in results["tasks"].items()}
    assert scores(here) == scores(pooled) and here["heldout"]["sources"] == pooled["heldout"]["sources"]


def test_report_covers_every_arm_stage(smoke_reproduction: Reproduction):
    report = smoke_reproduction.report
    with open(report / "table2.csv", newline="") as src:
        rows = list(csv.DictReader(src))
    # a shared stage is listed once, under the first arm that has it
    shared = {("tiny-smoke-balanced-to-text-cooldown-text", "init"), ("tiny-smoke-balanced-to-text-cooldown-text", "cpt")}
    assert {(row["arm"], row["stage"]) for row in rows} == {
        (arm, stage) for arm, stages in SMOKE_ARMS.items() for stage in stages} - shared
    assert all(row["results"] and row["reasoning_pct"] for row in rows)
    assert all(row["reasoning_bpb"] and row["code_bpb"] for row in rows)  # the continuous scores, every stage
    with open(report / "deltas.csv", newline="") as src:
        baselines = {row["baseline"] for row in csv.DictReader(src)}
    assert baselines == {"tiny-smoke-text-only/pt", "tiny-smoke-text-only/cooldown"}
    markdown = (report / "report.md").read_text()
    assert "| tiny-smoke-balanced-to-text | cpt |" in markdown
    assert "Table 2" in smoke_reproduction.resumed.output and str(report / "report.md") in smoke_reproduction.resumed.output
    summary = json.loads((report / "reproduce.json").read_text())
    assert (summary["distinct_stages"], summary["stages"], summary["tokens"]) == (DISTINCT_STAGES, 12, smoke_tokens())
    assert summary["skipped"] == {} and summary["eval"]["limit"] == 2


def test_repeated_run_reuses_training_and_evaluation(smoke_reproduction: Reproduction):
    run = smoke_reproduction.repeated
    assert run.returncode == 0, run.output[-3000:]
    assert "GPU available" not in run.output  # no Trainer was built: nothing trained
    assert run.output.count(": reusing ") == DISTINCT_STAGES
    for identity, mtime in smoke_reproduction.results_mtimes.items():
        assert (smoke_reproduction.stage_index / identity / "eval" / "results.json").stat().st_mtime_ns == mtime
    assert len(smoke_reproduction.results_mtimes) == DISTINCT_STAGES


# ---- up-front checks (no training) -------------------------------------------------------------------------
def test_recipe_files_are_the_named_recipes_directly_in_the_directory():
    tiny = REPO / "recipes" / "tiny"
    names = {path.name for path in recipe_files(tiny)}
    assert "text_only.yaml" in names and "sweep_code_25.yaml" in names
    assert not names & {"base.yaml", "cooldown_with_code.yaml", "cooldown_without_code.yaml"}
    assert study_dir(tiny, smoke=True) == SMOKE
    assert {path.name for path in recipe_files(SMOKE)} == {
        "text_only.yaml", "balanced_to_text.yaml", "balanced_to_text_cooldown_text.yaml", "sweep_code_0.yaml",
        "sweep_code_50.yaml", "quality_web.yaml", "quality_markup.yaml"}


@pytest.mark.parametrize("args, message", [
    (["recipes/nowhere"], "recipes/nowhere: no such recipe directory"),
    (["recipes/tiny/smoke", "--smoke"], "needs a 'smoke/' folder"),
    (["recipes/tiny/arms"], "no recipe in it"),
    (["recipes/tiny", "--limit", "0"], "--limit must be at least 1, got 0"),
    (["recipes/tiny", "--eval-workers", "0"], "--eval-workers must be at least 1, not 0"),
])
def test_bad_arguments_fail_before_any_work(args, message, capsys, tmp_path):
    assert main(["reproduce", *args, "--home", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _recipe(folder: Path, name: str, mixture: str, tokens: int, corpus: Path, start: str = "scratch") -> None:
    (folder / f"{name}.yaml").write_text(
        f"base: [{REPO / 'recipes' / 'tiny' / 'base.yaml'}]\nname: {name}\ndata: {{corpus: {corpus}, build: null}}\n"
        f"stages:\n  pt: {{tokens: {tokens}, mixture: {mixture}, init_from: {{ref: '{start}'}}}}\n")


def test_recipes_needing_absent_sources_are_skipped(smoke_reproduction: Reproduction, tmp_path):
    corpus = smoke_reproduction.home / "corpora" / "quickstart"
    _recipe(tmp_path, "synthetic_arm", "{code: 0.9, synthetic: 0.1}", 8192, corpus)
    _recipe(tmp_path, "text_arm", "{text: 1.0}", 8192, corpus)
    said = []
    study = plan_study(tmp_path, smoke_reproduction.home, "test", said.append)
    assert [recipe.name for recipe in study.recipes] == ["text_arm"]
    assert list(study.skipped) == [str(tmp_path / "synthetic_arm.yaml")]
    assert "['synthetic']" in study.skipped[str(tmp_path / "synthetic_arm.yaml")] and "codemix data synth" in said[0]


def test_a_stage_its_corpus_cannot_feed_stops_the_study_up_front(smoke_reproduction: Reproduction, tmp_path):
    corpus = smoke_reproduction.home / "corpora" / "quickstart"
    _recipe(tmp_path, "too_long", "{code_adjacent: 1.0}", 8192 * 4096, corpus)
    with pytest.raises(ConfigError, match="too_long.yaml: stages.pt.*too small for its share"):
        plan_study(tmp_path, smoke_reproduction.home, "test", print)


def test_results_are_current_only_for_the_same_identity_limit_and_tasks(smoke_reproduction: Reproduction):
    stage = next(smoke_reproduction.stage_index.iterdir())
    results = stage / "eval" / "results.json"
    tasks = sorted(SUITES["paper"])
    smoke = Settings.for_run(smoke=True, limit=None)
    assert (smoke.limit, smoke.code_limit) == (2, 2)
    assert is_current(results, stage.name, smoke, tasks)
    assert not is_current(results, "0" * 16, smoke, tasks)
    assert not is_current(results, stage.name, Settings.for_run(True, 3), tasks)
    assert not is_current(results, stage.name, Settings.for_run(True, 2, code_limit=1), tasks)
    assert not is_current(results, stage.name, smoke, tasks[1:])
    assert not is_current(stage / "eval" / "missing.json", stage.name, smoke, tasks)
    full = Settings.for_run(smoke=False, limit=None)
    assert (full.limit, full.code_limit) == (40, 10) and Settings.for_run(False, 5).code_limit == 5


def test_a_recipe_starting_from_another_recipes_stage_comes_after_it(smoke_reproduction: Reproduction, tmp_path):
    corpus = smoke_reproduction.home / "corpora" / "quickstart"
    _recipe(tmp_path, "a_child", "{text: 1.0}", 8192, corpus, start="recipe:z_parent.yaml#pt")
    _recipe(tmp_path, "z_parent", "{code: 1.0}", 8192, corpus)
    study = plan_study(tmp_path, smoke_reproduction.home, "test", print)
    assert [recipe.name for recipe in study.recipes] == ["z_parent", "a_child"]
    parent, child = study.stages
    assert child.identity != parent.identity and len(study.distinct) == 2
