"""Stage identities are pinned: runs already on disk stay valid across refactors.

tests/golden/stage_identities.json was written by the identity code before the plan layer existed, for
every stage of every shipped recipe, with the tokenizer hash fixed to a function of the corpus name (the
identity takes the hash as a string, so a real corpus is not needed to pin the rest of the payload)."""
import json
from pathlib import Path

import pytest

from codemix.config.loading import read_yaml
from codemix.config.recipe import load_recipe
from codemix.config.stages import stage_order
from codemix.plan.identity import stage_identity

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests/golden/stage_identities.json").read_text())


def _tokenizer_hash(recipe) -> str:
    return f"tokenizer-of:{recipe.data.corpus}"


def test_every_shipped_recipe_is_pinned():
    recipes = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "recipes").rglob("*.yaml")
                     if "name" in read_yaml(p) and not p.name.startswith("data."))
    assert recipes == sorted(GOLDEN)


@pytest.mark.parametrize("relative", sorted(GOLDEN))
def test_identities_unchanged(relative: str):
    recipe = load_recipe(ROOT / relative)
    identities = {stage: stage_identity(recipe, stage, _tokenizer_hash) for stage in stage_order(recipe)}
    assert identities == GOLDEN[relative]
