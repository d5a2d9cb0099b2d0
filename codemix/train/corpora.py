"""Corpora as an explicit step: before a recipe is planned, the corpus of the recipe (and of every
recipe a `recipe:` parent names) is opened, or built from its `data.build` when missing, and said so.
Planning then opens corpora that exist; nothing after this step builds one."""

import time
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from codemix.config.recipe import load_recipe
from codemix.config.recipe_schema import Recipe
from codemix.config.stages import parent_of, stage_order
from codemix.data.corpus import Corpus, resolve_corpus
from codemix.errors import CodemixError
from codemix.plan.stage import CorpusOf, built_corpus_of, corpus_complete
from codemix.runs.layout import Home


def prepare_corpora(recipe: Recipe, home: Home, command: str, say) -> CorpusOf:
    """Build what is missing for `recipe` and its recipe: parents; returns the opener planning uses."""
    for needed in _recipe_chain(recipe):
        ensure_corpus(needed, home, command, say)
    return built_corpus_of(home)


def ensure_corpus(recipe: Recipe, home: Home, command: str, say) -> Corpus:
    """The recipe's corpus; built first from data.build when it is missing (on rank 0; the other
    ranks of a torchrun job wait for it)."""
    path = resolve_corpus(recipe.data.corpus, home)
    if recipe.data.build is not None and not corpus_complete(path):
        if rank_zero_only.rank == 0:
            from codemix.config.data_spec import load_data_spec
            from codemix.data.build import build_corpus

            say(f"corpus {path} is missing: building it from {recipe.data.build}")
            build_corpus(load_data_spec(recipe.data.build), path, command=command)
        else:
            _wait_for_corpus(path)
    return Corpus.open(path)


def _recipe_chain(recipe: Recipe) -> list[Recipe]:
    """`recipe` and, depth first, every recipe its stages' recipe: parents name (validated: no cycle)."""
    chain = [recipe]
    for name in stage_order(recipe):
        parent = parent_of(recipe, name)
        if parent.kind == "recipe":
            chain += _recipe_chain(load_recipe(parent.path))
    return chain


def _wait_for_corpus(path: Path, timeout_s: float = 24 * 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while not corpus_complete(path):
        if time.monotonic() > deadline:
            raise CodemixError(f"gave up waiting for rank 0 to build the corpus at {path}")
        time.sleep(2)
