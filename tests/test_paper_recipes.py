"""The study's arms as recipes: every recipe loads and validates; its tokens per source kind per stage
match the study (PAPER.md: the arm table and Table 2); stages the arms share have one identity; the
tiny arms keep the study's ratios."""

import functools
import math
from pathlib import Path

import pytest

from codemix.analysis.kinds import CODE_KINDS, TEXT_KINDS, text_and_code
from codemix.config.data_spec import load_data_spec
from codemix.config.loading import read_yaml
from codemix.config.recipe import load_recipe
from codemix.config.stages import parent_of
from codemix.plan.identity import stage_identity

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PAPER, TINY = RECIPES / "paper", RECIPES / "tiny"
B = 1e9
STEP_TOKENS = 512 * 8192
TOKENIZER = "0" * 16  # any fixed hash: identities are compared within one corpus


@functools.cache
def loaded(path: Path):
    """Each recipe loaded once for the whole module (the tests only read them)."""
    return load_recipe(path)


def recipe_files(folder: Path) -> list[Path]:
    """The recipes in a folder: its YAML files with a `name` (the others are pieces for `base:`)."""
    return sorted(p for p in folder.glob("*.yaml") if "name" in read_yaml(p))


def kind_tokens(stage) -> dict[str, float]:
    total = sum(stage.mixture.values())
    return {kind: stage.tokens * weight / total for kind, weight in stage.mixture.items() if weight > 0}


# The study's corpus in billions of tokens per kind (PAPER.md, "Data"); the cooldown's hq, math and
# instruct sources are not stated.
CORPUS_B = {"text": 503, "code": 139, "markup": 180, "code_adjacent": 21.4, "synthetic": 3.2}

# Tokens (billions) per kind that each stage of each arm trains on (PAPER.md's arm table; the
# cooldown's split of its 32B text into high-quality text, math, instructions and ordinary text is
# ours, see the recipes).
CPT = {"text": 180, "code": 20}
COOLDOWN_CODE = {"hq": 12, "math": 4, "instruct": 4, "text": 12, "code": 8}
COOLDOWN_TEXT = {"hq": 15, "math": 5, "instruct": 5, "text": 15}
ARMS = {
    "text_only": {"pt": {"text": 400}},
    "balanced_only": {"pt": {"text": 200, "code": 200}},
    "balanced_to_text": {"init": {"text": 100, "code": 100}, "cpt": CPT},
    "code_to_text": {"init": {"code": 160, "markup": 40}, "cpt": CPT},
    "balanced_synth_to_text": {"init": {"text": 100, "code": 90, "synthetic": 10}, "cpt": CPT},
}
EXPECTED_470M = {
    **{arm: {**stages, "cooldown": COOLDOWN_CODE} for arm, stages in ARMS.items()},
    **{f"{arm}_cooldown_text": {**stages, "cooldown": COOLDOWN_TEXT} for arm, stages in ARMS.items()},
    **{f"sweep_code_{p}": {"pt": {k: v for k, v in (("text", 200 - 2 * p), ("code", 2 * p)) if v}}
       for p in (0, 25, 50, 75, 90, 100)},
    "quality_web": {"pt": {"code": 200}},
    "quality_markup": {"pt": {"code": 160, "markup": 40}},
    "quality_adjacent": {"pt": {"code": 170, "code_adjacent": 30}},
    "quality_synthetic": {"pt": {"code": 180, "synthetic": 20}},
}
# The study ran its initialization arms (with cooldowns) at 2.8B as well, not the sweeps.
EXPECTED_2P8B = {name: stages for name, stages in EXPECTED_470M.items() if not name.startswith(("sweep", "quality"))}

# Table 2 of the paper (470M): text and code tokens (billions) each stage adds.
TABLE_2 = [
    ("text_only", "pt", 400, 0), ("text_only", "cooldown", 32, 8),
    ("balanced_only", "pt", 200, 200), ("balanced_only", "cooldown", 32, 8),
    ("balanced_to_text", "init", 100, 100), ("balanced_to_text", "cpt", 180, 20),
    ("balanced_to_text", "cooldown", 32, 8),
    ("code_to_text", "init", 0, 200), ("code_to_text", "cpt", 180, 20), ("code_to_text", "cooldown", 32, 8),
]


def load(folder: Path, stem: str):
    return loaded(folder / f"{stem}.yaml")


@pytest.mark.parametrize("size, expected", [("470m", EXPECTED_470M), ("2.8b", EXPECTED_2P8B)])
def test_every_arm_is_a_recipe_with_the_study_tokens_per_kind_per_stage(size, expected):
    folder = PAPER / size
    assert sorted(p.stem for p in recipe_files(folder)) == sorted(expected)
    for stem, stages in expected.items():
        recipe = load(folder, stem)
        assert list(recipe.stages) == list(stages), stem
        for name, kinds in stages.items():
            got = kind_tokens(recipe.stages[name])
            assert sorted(got) == sorted(kinds), (stem, name)
            for kind, billions in kinds.items():
                # Budgets are the nearest whole number of 512 x 8192-token steps (recipes/paper/study.yaml).
                assert abs(got[kind] - billions * B) <= STEP_TOKENS, (stem, name, kind, got[kind])


@pytest.mark.parametrize("stem, stage, text_b, code_b", TABLE_2)
def test_text_and_code_tokens_match_table_2(stem, stage, text_b, code_b):
    text, code = text_and_code(kind_tokens(load(PAPER / "470m", stem).stages[stage]))
    assert abs(text - text_b * B) <= STEP_TOKENS and abs(code - code_b * B) <= STEP_TOKENS


def test_batch_warmup_and_schedules_are_the_study_s():
    for size, peak in (("470m", 3.0e-4), ("2.8b", 1.6e-4)):
        for path in recipe_files(PAPER / size):
            recipe = loaded(path)
            for name, stage in recipe.stages.items():
                assert (stage.seq_len, stage.global_batch) == (8192, 512), (path, name)
                if name == "cooldown":
                    parent = recipe.stages[parent_of(recipe, name).stage]
                    assert (stage.schedule.kind, stage.schedule.warmup, stage.schedule.final_lr) == ("linear", 0, 1e-6)
                    assert stage.optimizer.lr == parent.schedule.min_lr  # the anneal continues the parent's LR
                else:
                    assert (stage.schedule.kind, stage.schedule.warmup) == ("cosine", 1325), (path, name)
                    assert stage.optimizer.lr == peak


def test_stages_repeat_a_source_only_as_much_as_the_study_corpus_needs():
    for path in recipe_files(PAPER / "470m") + recipe_files(PAPER / "2.8b"):
        for name, stage in loaded(path).stages.items():
            passes = [tokens / (CORPUS_B[kind] * B) for kind, tokens in kind_tokens(stage).items() if kind in CORPUS_B]
            needed = max(passes + [1.0])
            assert needed <= stage.max_passes < needed + 0.2, (path, name, needed, stage.max_passes)


def identities(folder: Path, stem: str) -> dict[str, str]:
    recipe = load(folder, stem)
    return {name: stage_identity(recipe, name, TOKENIZER) for name in recipe.stages}


@pytest.mark.parametrize("folder", [PAPER / "470m", PAPER / "2.8b", TINY])
def test_the_cooldowns_of_an_arm_share_every_earlier_stage(folder):
    for arm in ARMS:
        with_code, without_code = identities(folder, arm), identities(folder, f"{arm}_cooldown_text")
        assert list(with_code) == list(without_code)
        assert with_code.pop("cooldown") != without_code.pop("cooldown")
        assert with_code == without_code, arm


@pytest.mark.parametrize("folder", [PAPER / "470m", TINY])
def test_arms_that_describe_one_stage_train_it_once(folder):
    ids = {path.stem: identities(folder, path.stem) for path in recipe_files(folder)}
    assert ids["sweep_code_50"]["pt"] == ids["balanced_to_text"]["init"]
    assert ids["quality_markup"]["pt"] == ids["code_to_text"]["init"]
    assert ids["quality_web"]["pt"] == ids["sweep_code_100"]["pt"]
    # Everything else is its own stage: 5 arms x (pretraining stages + 2 cooldowns), 6 sweep models
    # and 4 quality models, less the 3 shared above.
    stages = {identity for stages in ids.values() for identity in stages.values()}
    assert len(stages) == 3 + 3 + 4 + 4 + 4 + 6 + 4 - 3


def test_sizes_do_not_share_stages():
    small = set(identities(PAPER / "470m", "balanced_to_text").values())
    assert small.isdisjoint(identities(PAPER / "2.8b", "balanced_to_text").values())


def test_tiny_arms_keep_the_study_s_proportions():
    """Every tiny arm is its 470M arm scaled by one factor: per stage and kind (the cooldown's
    high-quality text, math and instructions, which the quickstart corpus lacks, counted as text)."""
    scale = load(TINY, "balanced_to_text").stages["init"].tokens / load(PAPER / "470m", "balanced_to_text").stages["init"].tokens
    tiny_stems = [path.stem for path in recipe_files(TINY)]
    assert sorted(tiny_stems) == sorted(EXPECTED_470M)
    for stem in tiny_stems:
        tiny, paper = load(TINY, stem), load(PAPER / "470m", stem)
        assert list(tiny.stages) == list(paper.stages), stem
        for name in tiny.stages:
            expected = folded(kind_tokens(paper.stages[name]))
            got = folded(kind_tokens(tiny.stages[name]))
            assert sorted(got) == sorted(expected), (stem, name)
            for kind in got:
                assert math.isclose(got[kind], expected[kind] * scale, rel_tol=1e-3), (stem, name, kind)


def folded(tokens_by_kind: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, tokens in tokens_by_kind.items():
        key = "text" if kind in TEXT_KINDS else kind
        out[key] = out.get(key, 0.0) + tokens
    return out


def test_smoke_subset_is_tiny_arms_with_smaller_budgets():
    """Half of each tiny pretraining stage; cooldowns of 2 steps, so the anneal takes one step
    above its final LR."""
    smoke = recipe_files(TINY / "smoke")
    assert smoke
    for path in smoke:
        recipe = loaded(path)
        arm = load(TINY, path.stem)
        assert list(recipe.stages) == list(arm.stages)
        for name, stage in recipe.stages.items():
            assert stage.mixture == arm.stages[name].mixture
            if name == "cooldown":
                assert stage.steps == 2, path
            else:
                assert stage.tokens * 2 == arm.stages[name].tokens, (path, name)


def test_data_example_builds_every_kind_the_paper_mixtures_use(tmp_path, monkeypatch):
    layout = ["slimpajama/train/chunk1/example_train_0.jsonl.zst",
              "the-stack-dedup/data/python/train-00000.parquet", "the-stack-dedup/data/html/train-00000.parquet",
              "the-stack-dedup/data/jupyter-notebook/train-00000.parquet", "commits/part-0.jsonl.gz",
              "stackexchange/part-0.jsonl", "synthetic/verified.jsonl", "wikipedia/state.json",
              "open-web-math/data/train-00000-of-00114.parquet", "proof-pile-2/arxiv/train/arXiv_000.jsonl.zst",
              "flan/part-0.jsonl.gz", "openhermes/part-0.jsonl"]
    for relative in layout:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    monkeypatch.setenv("CODEMIX_PAPER_DATA", str(tmp_path))
    spec = load_data_spec(PAPER / "data.example.yaml")
    assert spec.name == "paper" and spec.seq_len == 8192 and spec.tokenizer.vocab_size == 256000
    assert all(source.reader.path.startswith(str(tmp_path)) for source in spec.sources)
    used = {kind for size in ("470m", "2.8b") for path in recipe_files(PAPER / size)
            for stage in loaded(path).stages.values() for kind in stage.mixture}
    assert used == {source.kind for source in spec.sources} == set(TEXT_KINDS) | set(CODE_KINDS)
    assert load(PAPER / "470m", "text_only").data.corpus == spec.name


@pytest.mark.parametrize("piece", ["cooldown_with_code.yaml", "cooldown_without_code.yaml"])
def test_every_cooldown_proportion_says_whether_it_is_the_study_s_or_ours(piece):
    lines = (PAPER / piece).read_text().splitlines()
    for kind in read_yaml(PAPER / piece)["stages"]["cooldown"]["mixture"]:
        line = next(line for line in lines if line.strip().startswith(f"{kind}:"))
        assert "# the study's" in line or "# ours" in line, (piece, line)
