"""`codemix recipe show` and `codemix recipe plan DIR`: the resolved recipe with every value's origin,
each stage's plan read from codemix.plan, and a directory of recipes as one study."""
from pathlib import Path

from test_train_stages import COOLDOWN, GLOBAL, INIT, write_recipe

from codemix.cli import main
from codemix.config.recipe import load_recipe
from codemix.data.corpus import Corpus
from codemix.plan.stage import plan_recipe

REPO = Path(__file__).resolve().parents[1]


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_show_names_the_origin_of_every_value_and_the_plan(small_corpus, tmp_path, capsys):
    path = write_recipe(tmp_path, "arm", small_corpus, {"init": INIT, "cooldown": COOLDOWN})
    assert main(["recipe", "show", str(path), "stages.cooldown.seed=7", "--home", str(tmp_path / "home")]) == 0
    out = _lines(capsys)
    assert "  stages.cooldown.seed = 7  (command line)" in out
    assert "  stages.init.seed = 0  (default)" in out
    assert f"  stages.init.global_batch = {GLOBAL}  ({path} (stage_defaults))" in out
    assert f"  stages.cooldown.tokens = {COOLDOWN['tokens']}  ({path})" in out
    plan = plan_recipe(load_recipe(path, ["stages.cooldown.seed=7"]), lambda _: Corpus.open(small_corpus),
                       tmp_path / "home")
    for stage in plan.stages:  # the printed plan is the planner's, not recomputed
        assert f"stage {stage.name} [{stage.identity}] -> {stage.run_dir.path}" in out
        assert any(line.startswith(f"  plan: {stage.steps} steps (warmup {stage.warmup_steps}, decay "
                                   f"{stage.decay_steps})") for line in out)
        for source in stage.data.drawn:
            assert any(line.split()[:1] == [source.source.name] and f"{source.tokens:,} tokens" in line for line in out)
    cooldown = plan.stage("cooldown")
    assert any(f"parent stage:init [{plan.stage('init').identity}]" in line for line in out)
    assert cooldown.parent.identity == plan.stage("init").identity


def test_show_without_a_built_corpus_says_so_and_builds_nothing(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["recipe", "show", str(REPO / "recipes/tiny/balanced_to_text.yaml"), "--home", str(home)]) == 0
    out = _lines(capsys)
    assert any(line.startswith("  plan: ") and "is not built yet (codemix data build" in line for line in out)
    assert not home.exists()  # nothing was built or written


def test_plan_of_a_directory_lists_each_distinct_stage_once_with_the_arms_sharing_it(tmp_path, capsys):
    assert main(["recipe", "plan", str(REPO / "recipes/tiny/smoke"), "--home", str(tmp_path / "home")]) == 0
    out = _lines(capsys)
    assert out[0].startswith("study ") and "9 distinct stages, 12 arm stages" in out[0], out[0]
    shared = [line for line in out if "shared with" in line]
    assert any("tiny-smoke-balanced-to-text/init" in line and "tiny-smoke-balanced-to-text-cooldown-text/init" in line
               for line in shared)
    assert not (tmp_path / "home").exists()
