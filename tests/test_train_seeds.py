"""A recipe whose stages list seeds (`seed: [s0, s1]`): `codemix train` trains it once per seed (each
seed its own stage identity, lineage and weights), and `recipe show` / `recipe plan DIR` plan every
seed run. `codemix reproduce --seeds N` is in test_reproduce_seeds.py."""

import json

from safetensors.torch import load_file

from codemix.cli import main
from test_train_stages import INIT, STEP_TOKENS, write_recipe

SEEDED = {**INIT, "tokens": 2 * STEP_TOKENS, "seed": [3, 4], "val_interval_tokens": 0,
          "checkpoint_interval_tokens": 0, "snapshot_interval_tokens": 0}


def test_train_runs_each_listed_seed_and_plan_shows_them(small_corpus, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "recipes", "seeded", small_corpus, {"init": SEEDED})
    home = str(tmp_path / "home")
    assert main(["train", "--home", home, str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "seed run 1 of 2" in out and "seed run 2 of 2" in out
    stages = sorted((tmp_path / "home" / "runs" / "seeded").glob("init-*"))
    assert len(stages) == 2
    seeds = sorted(json.loads((stage / "lineage.json").read_text())["stage_config"]["seed"] for stage in stages)
    assert seeds == [3, 4]
    first, second = (load_file(stage / "final" / "model.safetensors") for stage in stages)
    assert any(not first[name].equal(second[name]) for name in first)  # another initialisation and data order

    assert main(["recipe", "show", "--home", home, str(recipe)]) == 0
    shown = capsys.readouterr().out
    identities = {stage.name.split("-", 1)[1] for stage in stages}
    assert any(line.startswith("stage init [") and line.split("[")[1].split("]")[0] in identities
               for line in shown.splitlines())
    assert any(line.startswith("  seed run 2: seed 4 [") for line in shown.splitlines())

    assert main(["recipe", "plan", "--home", home, str(recipe.parent)]) == 0
    planned = capsys.readouterr().out
    assert "2 distinct stages" in planned and "seeded/init (seed 3)" in planned and "seeded/init (seed 4)" in planned
