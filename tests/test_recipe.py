"""Recipes: composition (base files, stage defaults, command-line overrides), up-front validation with
errors naming key and file, and stage identity."""

import textwrap
from pathlib import Path

import pytest

from codemix.config.recipe import load_recipe
from codemix.config.stages import model_config, parent_of, stage_order
from codemix.plan.identity import identity_payload, stage_identity
from codemix.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny" / "balanced_to_text.yaml"
HASH = "0123456789abcdef"

BASE = """
model: {preset: tiny}
data: {corpus: quickstart}
trainer: {accelerator: cpu}
stage_defaults:
  seq_len: 128
  global_batch: 4
  micro_batch: 2
  optimizer: {lr: 1.0e-3}
  schedule: {kind: cosine, warmup: 0.25, min_lr: 1.0e-4}
"""

ARM = """
base: [base.yaml]
name: arm
stages:
  init:
    tokens: 4096
    mixture: {code: 0.5, text: 0.5}
  cpt:
    tokens: 4096
    mixture: {text: 0.9, code: 0.1}
    init_from: {ref: "stage:init"}
  cooldown:
    tokens: 1024
    mixture: {text: 0.8, code: 0.2}
    init_from: {ref: "stage:cpt"}
    schedule: {kind: linear, warmup: 0, final_lr: 1.0e-6}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def arm(tmp_path: Path) -> Path:
    write(tmp_path, "base.yaml", BASE)
    return write(tmp_path, "arm.yaml", ARM)


def refused(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_recipe(path, overrides)
    return str(err.value)


# --- the shipped tiny recipe ----------------------------------------------------------------------

def test_tiny_balanced_to_text_is_the_three_stage_arm():
    recipe = load_recipe(TINY)
    assert stage_order(recipe) == ["init", "cpt", "cooldown"]
    assert recipe.source_path == str(TINY)
    assert recipe.base_chain == [str(TINY.parent / "base.yaml")]
    init, cpt, cooldown = (recipe.stages[name] for name in stage_order(recipe))
    assert init.mixture == {"code": 0.5, "text": 0.5}
    assert cpt.mixture == {"text": 0.9, "code": 0.1}
    assert cooldown.mixture == {"text": 0.8, "code": 0.2}
    assert [parent_of(recipe, name).kind for name in stage_order(recipe)] == ["scratch", "stage", "stage"]
    assert parent_of(recipe, "cooldown").stage == "cpt"
    assert cooldown.schedule.kind == "linear" and cooldown.schedule.final_lr == 1e-6
    assert init.tokens == cpt.tokens == 5 * cooldown.tokens  # the study's 200B : 200B : 40B
    assert all(stage.seq_len == 512 for stage in recipe.stages.values())
    assert Path(recipe.data.build).is_file()
    assert model_config(recipe, vocab_size=8192).vocab_size == 8192


# --- composition ----------------------------------------------------------------------------------

def test_stage_defaults_fill_every_stage_and_a_stage_value_wins(arm: Path):
    recipe = load_recipe(arm)
    init, cpt, cooldown = recipe.stages.values()
    assert (init.seq_len, init.global_batch, init.micro_batch) == (128, 4, 2)
    assert init.schedule.kind == cpt.schedule.kind == "cosine"
    assert cooldown.schedule.kind == "linear" and cooldown.schedule.warmup == 0
    assert cooldown.optimizer.lr == 1e-3
    assert init.init_from.ref == "scratch"  # the first stage's unstated parent, made explicit
    assert init.steps == 4096 // (4 * 128)


def test_a_default_mixture_serves_the_stages_that_write_none(tmp_path: Path, arm: Path):
    write(tmp_path, "mixed.yaml", """
        base: [arm.yaml]
        stage_defaults:
          mixture: {text: 1, code: 1}
        stages:
          extra: {tokens: 512, init_from: {ref: "stage:cooldown"}}
    """)
    recipe = load_recipe(tmp_path / "mixed.yaml")
    assert recipe.stages["extra"].mixture == {"text": 1.0, "code": 1.0}
    assert recipe.stages["init"].mixture == {"code": 0.5, "text": 0.5}
    assert stage_order(recipe) == ["init", "cpt", "cooldown", "extra"]


def test_command_line_overrides_come_last(arm: Path):
    recipe = load_recipe(arm, ["stages.cooldown.tokens=2048", "stage_defaults.seed=7",
                               "stages.init.seed=3"])
    assert recipe.stages["cooldown"].tokens == 2048
    assert recipe.stages["cpt"].seed == 7
    assert recipe.stages["init"].seed == 3


def test_a_written_mixture_replaces_the_base_one_and_a_single_weight_edits_it(tmp_path: Path, arm: Path):
    write(tmp_path, "text_cpt.yaml", """
        base: [arm.yaml]
        stages:
          cpt:
            mixture: {text: 1.0}
    """)
    assert load_recipe(tmp_path / "text_cpt.yaml").stages["cpt"].mixture == {"text": 1.0}
    edited = load_recipe(arm, ["stages.cpt.mixture.code=0.3"]).stages["cpt"].mixture
    assert edited == {"text": 0.9, "code": 0.3}
    replaced = load_recipe(arm, ["stages.cpt.mixture={markup: 1}"]).stages["cpt"].mixture
    assert replaced == {"markup": 1.0}


def test_global_batch_in_tokens_is_settled_into_sequences(arm: Path):
    recipe = load_recipe(arm, ["stage_defaults.global_batch=null", "stage_defaults.global_batch_tokens=1024"])
    assert all(s.global_batch == 8 and s.global_batch_tokens is None for s in recipe.stages.values())


def test_relative_paths_are_taken_from_the_file_that_wrote_them(tmp_path: Path, arm: Path):
    write(tmp_path, "data/spec.yaml", "name: x\n")
    write(tmp_path, "arms/nested.yaml", """
        base: [../arm.yaml]
        data: {corpus: ../corpora/mine, build: ../data/spec.yaml}
    """)
    recipe = load_recipe(tmp_path / "arms" / "nested.yaml")
    assert recipe.data.corpus == str(tmp_path / "corpora" / "mine")
    assert recipe.data.build == str(tmp_path / "data" / "spec.yaml")
    assert recipe.base_chain == [str(tmp_path / "base.yaml"), str(tmp_path / "arm.yaml")]


# --- validation: each error names the key and the file --------------------------------------------

def test_a_misspelt_key_names_the_key_and_the_file_that_holds_it(tmp_path: Path, arm: Path):
    write(tmp_path, "base.yaml", BASE.replace("micro_batch: 2", "micro_bach: 2"))
    message = refused(arm)
    assert "micro_bach" in message and str(tmp_path / "base.yaml") in message
    message = refused(write(tmp_path, "typo.yaml", ARM.replace("base: [base.yaml]", "bases: [base.yaml]")))
    assert "bases" in message and "typo.yaml" in message


def test_a_misspelt_override_and_model_field_name_the_command_line(arm: Path):
    message = refused(arm, ["stages.cpt.tokenz=1"])
    assert "tokenz" in message and "command line" in message
    message = refused(arm, ["model.d_modle=64"])
    assert "d_modle" in message and "command line" in message


def test_a_bad_model_value_names_the_file(tmp_path: Path, arm: Path):
    write(tmp_path, "base.yaml", BASE.replace("preset: tiny", "preset: tiny, block: diagonal"))
    message = refused(arm)
    assert "diagonal" in message and str(tmp_path / "base.yaml") in message
    assert "no-such-preset" in refused(arm, ["model.preset=no-such-preset"])


def test_a_budget_that_is_not_whole_batches_says_what_would_be(arm: Path):
    message = refused(arm, ["stages.cpt.tokens=5000"])
    assert "stages.cpt.tokens" in message and "command line" in message
    assert "4608 or 5120" in message  # the multiples of 4 x 128 either side


def test_an_impossible_batch_split_says_what_would_work(arm: Path):
    message = refused(arm, ["stage_defaults.global_batch=6", "stage_defaults.micro_batch=4"])
    assert "global_batch" in message and "command line" in message
    assert "multiple of 4 (4, 8)" in message and "micro_batch in [1, 2, 3, 6]" in message
    message = refused(arm, ["trainer.devices=3"])
    assert "3 device(s)" in message and "multiple of 6" in message and "micro_batch in" not in message


@pytest.mark.parametrize("mixture, reason", [
    ("{text: -0.1, code: 1}", "is negative"),
    ("{text: 0, code: 0}", "has no positive weight"),
    ("{}", "is empty"),
])
def test_bad_mixture_weights_are_refused(tmp_path: Path, arm: Path, mixture: str, reason: str):
    path = write(tmp_path, "bad_mix.yaml", f"base: [arm.yaml]\nstages:\n  cpt:\n    mixture: {mixture}\n")
    message = refused(path)
    assert reason in message and "stages.cpt.mixture" in message and "bad_mix.yaml" in message


def test_both_or_neither_batch_size_is_refused(arm: Path):
    assert "exactly one" in refused(arm, ["stages.init.global_batch_tokens=512"])
    assert "exactly one" in refused(arm, ["stages.init.global_batch=null"])


def test_validation_samples_must_be_positive(arm: Path):
    message = refused(arm, ["stages.cpt.val_samples_per_source=0"])
    assert "stages.cpt.val_samples_per_source" in message and "positive" in message


def test_a_warmup_longer_than_the_stage_is_refused(arm: Path):
    message = refused(arm, ["stages.cooldown.schedule.warmup=2"])  # the cooldown has 2 steps
    assert "stages.cooldown.schedule.warmup" in message and "none would be left to decay" in message
    wsd = ["stages.init.schedule.kind=wsd", "stages.init.schedule.warmup=0.95"]  # 8 warmup + 1 decay
    assert "longer than the stage" in refused(arm, wsd)


def test_unknown_trainer_choices_are_refused(arm: Path):
    assert "('auto', 'ddp', 'fsdp2')" in refused(arm, ["trainer.strategy=deepspeed"])
    fsdp1 = refused(arm, ["trainer.strategy=fsdp"])
    assert "trainer.strategy" in fsdp1 and "use fsdp2" in fsdp1
    assert "precision" in refused(arm, ["trainer.precision=bf17"])
    assert "trainer.activation_checkpointing" in refused(arm, ["trainer.activation_checkpointing=-1"])
    assert "trainer.device_memory_gb" in refused(arm, ["trainer.device_memory_gb=0"])


def test_activation_checkpointing_leaves_the_identity(arm: Path):
    """Recomputing activations changes memory, not the weights: the stage is the same stage."""
    assert identities(arm, ["trainer.activation_checkpointing=1"]) == identities(arm)


# --- init_from --------------------------------------------------------------------------------------

@pytest.mark.parametrize("ref, reason", [
    (None, "must say where it starts"),
    ("stage:pretrain", "names no stage"),
    ("stage:cooldown", "not an earlier stage"),
    ("stage:cpt", "not an earlier stage"),  # itself
    ("init", "is not one of"),
    ("recipe:arm.yaml", "is not one of"),  # no #<stage>
    ("recipe:missing.yaml#init", "does not exist"),
    ("checkpoint:missing.ckpt", "does not exist"),
])
def test_a_parent_that_points_nowhere_is_refused(arm: Path, ref: str | None, reason: str):
    message = refused(arm, [f"stages.cpt.init_from.ref={'null' if ref is None else ref}"])
    assert reason in message and "stages.cpt.init_from.ref" in message and "command line" in message


def test_loading_optimizer_state_needs_a_parent(arm: Path):
    assert "no optimizer state" in refused(arm, ["stages.init.init_from.load_optimizer=true"])


def test_a_recipe_parent_must_have_the_stage(tmp_path: Path, arm: Path):
    other = write(tmp_path, "other.yaml", ARM.replace('"stage:cpt"', '"recipe:arm.yaml#pretrain"'))
    message = refused(other)
    assert "names no stage of that recipe" in message and "other.yaml" in message


def test_recipes_and_bases_that_loop_are_refused(tmp_path: Path):
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "a.yaml", ARM.replace('"stage:init"', '"recipe:b.yaml#init"'))
    write(tmp_path, "b.yaml", ARM.replace('"stage:init"', '"recipe:a.yaml#init"'))
    assert "cycle" in refused(tmp_path / "a.yaml")
    write(tmp_path, "loop1.yaml", "base: [loop2.yaml]\n")
    write(tmp_path, "loop2.yaml", "base: [loop1.yaml]\n")
    assert "include each other" in refused(tmp_path / "loop1.yaml")


# --- stage identity ---------------------------------------------------------------------------------

def identities(path: Path, overrides: list[str] | None = None, tokenizer_hash: str = HASH) -> dict[str, str]:
    recipe = load_recipe(path, overrides)
    return {name: stage_identity(recipe, name, tokenizer_hash) for name in stage_order(recipe)}


def test_identity_is_16_hex_and_stable(arm: Path):
    first = identities(arm)
    assert first == identities(arm)
    assert all(len(value) == 16 and int(value, 16) >= 0 for value in first.values())
    assert len(set(first.values())) == 3


def test_identity_ignores_names_and_execution_details(tmp_path: Path, arm: Path):
    cosmetic = ["name=renamed", "description=words", "stage_defaults.micro_batch=1",
                "trainer.devices=2", "trainer.strategy=ddp", "stage_defaults.num_workers=2",
                "stage_defaults.val_interval_tokens=512", "stage_defaults.checkpoint_interval_tokens=1024",
                "stage_defaults.val_samples_per_source=3",
                "stages.cpt.mixture={text: 9, code: 1}",  # the same shares
                "stage_defaults.global_batch=null", "stage_defaults.global_batch_tokens=512",  # 4 x 128
                "stages.init.schedule.warmup=2"]  # 25% of 8 steps, as steps
    assert identities(arm, cosmetic) == identities(arm)


@pytest.mark.parametrize("change, changed", [
    ("stages.cooldown.tokens=2048", {"cooldown"}),
    ("stages.cooldown.schedule.final_lr=0", {"cooldown"}),
    ("stages.cpt.mixture.code=0.2", {"cpt", "cooldown"}),
    ("stages.init.seed=1", {"init", "cpt", "cooldown"}),
    ("stages.cooldown.init_from.load_optimizer=true", {"cooldown"}),
    ("model.d_model=96", {"init", "cpt", "cooldown"}),
    ("trainer.precision=bf16-mixed", {"init", "cpt", "cooldown"}),
])
def test_identity_follows_what_changes_the_weights_and_the_parent_chain(arm: Path, change: str, changed: set):
    before, after = identities(arm), identities(arm, [change])
    assert {name for name in before if before[name] != after[name]} == changed


def test_identity_depends_on_the_tokenizer(arm: Path):
    assert identities(arm, tokenizer_hash="fedcba9876543210")["init"] != identities(arm)["init"]


def test_recipes_sharing_a_stage_chain_share_identities(tmp_path: Path, arm: Path):
    """A cooldown-only recipe branching from arm.yaml's CPT trains the same cooldown."""
    write(tmp_path, "cooldown_only.yaml", """
        base: [base.yaml]
        name: cooldown-only
        stages:
          cool:
            tokens: 1024
            mixture: {code: 2, text: 8}
            init_from: {ref: "recipe:arm.yaml#cpt"}
            schedule: {kind: linear, warmup: 0, final_lr: 1.0e-6}
    """)
    branch = load_recipe(tmp_path / "cooldown_only.yaml")
    assert parent_of(branch, "cool").path == tmp_path / "arm.yaml"
    assert stage_identity(branch, "cool", HASH) == identities(arm)["cooldown"]
    # ... and per recipe, through a function, when the chain spans corpora.
    by_recipe = stage_identity(branch, "cool", lambda recipe: HASH if recipe.name == "arm" else "other")
    assert by_recipe != identities(arm)["cooldown"]


def test_a_checkpoint_parent_is_identified_by_its_content(tmp_path: Path, arm: Path):
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights v1")
    overrides = [f"stages.cpt.init_from.ref=checkpoint:{weights.parent}"]
    recipe = load_recipe(arm, overrides)
    first = stage_identity(recipe, "cpt", HASH)
    assert identity_payload(recipe, "cpt", HASH)["parent"]["identity"].startswith("sha256:")
    weights.write_bytes(b"weights v2")
    assert stage_identity(recipe, "cpt", HASH) != first
