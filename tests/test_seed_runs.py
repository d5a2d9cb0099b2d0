"""A recipe once per seed (codemix/config/seeds.py): `seed:` lists and `--seeds N`, the identities they
give (one seed changes nothing; a stage that arms share stays shared per seed), and the lists a recipe
may not hold (each refused when it loads, naming the key and the file)."""

from pathlib import Path

import pytest

from codemix.cli import main
from codemix.config.recipe import load_recipe
from codemix.config.seeds import seed_runs
from codemix.errors import ConfigError
from codemix.plan.identity import stage_identity

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "recipes" / "tiny" / "base.yaml"
TOKENIZER = "0" * 64


def write_recipe(folder: Path, name: str, stages: str, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"base: [{BASE}]\nname: {name}\ndata: {{corpus: ./corpus, build: null}}\n{extra}stages:\n{stages}")
    return path


PT = "  pt: {tokens: 8192, mixture: {text: 1.0}, init_from: {ref: scratch}}\n"
COOLDOWN = "  cooldown: {tokens: 8192, mixture: {text: 0.8, code: 0.2}, init_from: {ref: 'stage:pt'}}\n"


def identities(recipe) -> dict[str, str]:
    return {name: stage_identity(recipe, name, TOKENIZER) for name in recipe.stages}


def test_one_seed_is_the_recipe_itself(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "arm", PT + COOLDOWN))
    assert seed_runs(recipe) == [recipe] and seed_runs(recipe, 1) == [recipe]
    assert seed_runs(recipe)[0] is recipe  # the same stage identities as without seeds


def test_seeds_n_counts_up_from_each_stages_seed(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "arm", PT + COOLDOWN.replace("}\n", ", seed: 7}\n")))
    runs = seed_runs(recipe, 3)
    assert [[stage.seed for stage in run.stages.values()] for run in runs] == [[0, 7], [1, 8], [2, 9]]
    assert identities(runs[0]) == identities(recipe)  # the first seed is the recipe as written
    assert len({identity for run in runs for identity in identities(run).values()}) == 6
    assert all(run.name == recipe.name for run in runs)


def test_seed_lists_and_shared_stages_per_seed(tmp_path):
    listed = "stage_defaults: {seed: [3, 5]}\n"
    with_code = load_recipe(write_recipe(tmp_path, "arm", PT + COOLDOWN, listed))
    without = load_recipe(write_recipe(tmp_path, "arm-cooldown-text", PT + COOLDOWN.replace(
        "{text: 0.8, code: 0.2}", "{text: 1.0}"), listed))
    runs = {recipe.name: seed_runs(recipe) for recipe in (with_code, without)}
    assert [run.stages["pt"].seed for run in runs["arm"]] == [3, 5]
    for k in range(2):  # the shared pt: one identity per seed, the same in both arms
        assert identities(runs["arm"][k])["pt"] == identities(runs["arm-cooldown-text"][k])["pt"]
        assert identities(runs["arm"][k])["cooldown"] != identities(runs["arm-cooldown-text"][k])["cooldown"]
    assert identities(runs["arm"][0])["pt"] != identities(runs["arm"][1])["pt"]
    assert seed_runs(with_code, 2) == runs["arm"]
    with pytest.raises(ConfigError, match="list 2 seeds each, while --seeds asks for 3"):
        seed_runs(with_code, 3)


@pytest.mark.parametrize("stages, message", [
    (PT.replace("}\n", ", seed: [0, 1]}\n") + COOLDOWN, "key 'stages.cooldown.seed': 0 is one seed while stages ['pt']"),
    (PT.replace("}\n", ", seed: [0, 1]}\n") + COOLDOWN.replace("}\n", ", seed: [0, 1, 2]}\n"),
     "key 'stages.pt.seed': [0, 1] lists 2 seeds while other stages list [3]"),
    (PT.replace("}\n", ", seed: [1, 1]}\n"), "key 'stages.pt.seed': [1, 1] must list distinct seeds"),
    (PT.replace("}\n", ", seed: []}\n"), "key 'stages.pt.seed': [] must list distinct seeds"),
    (PT.replace("}\n", ", seed: [0, -1]}\n"), "must be >= 0"),
    (PT.replace("}\n", ", seed: [a]}\n"), "key 'stages.pt.seed'"),
])
def test_bad_seed_lists_are_refused_naming_the_key_and_file(tmp_path, stages, message):
    path = write_recipe(tmp_path, "arm", stages)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as raised:
        load_recipe(path)
    # the file that set the bad value: the cooldown's single seed comes from base.yaml's stage_defaults
    assert str(BASE if "one seed" in message else path) in str(raised.value)


def test_reproduce_refuses_a_bad_seed_count_before_any_work(tmp_path, capsys):
    assert main(["reproduce", str(REPO / "recipes" / "tiny"), "--seeds", "0", "--home", str(tmp_path)]) == 2
    assert "--seeds 0: must be at least 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("spec, message", [
    ("ftp://judge", "expected an http(s):// chat-completions URL or local:CHECKPOINT_DIR"),
    ("local:/nowhere/at/all", "--judge local:/nowhere/at/all"),
])
def test_reproduce_refuses_a_bad_judge_before_any_work(tmp_path, capsys, spec, message):
    assert main(["reproduce", str(REPO / "recipes" / "tiny"), "--judge", spec, "--home", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
