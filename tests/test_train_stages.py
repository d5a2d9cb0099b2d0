"""Staged training from recipes on the real small corpus: lineage, token accounting, LR, metrics,
init_from weights and optimizer state, and reuse of completed stages (also across recipes)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from codemix.cli import main
from codemix.config.recipe import load_recipe
from codemix.data.corpus import Corpus
from codemix.model.checkpoint import load_pretrained
from codemix.plan.stage import plan_recipe
from codemix.train.run import StageTraining, resolve_parent, train_recipe
from codemix.train.schedules import lr_at
from codemix.train.stages import read_metrics, read_training_checkpoint

MICRO, GLOBAL, SEQ = 4, 8, 128
STEP_TOKENS = GLOBAL * SEQ
MODEL = {"preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 2, "max_seq_len": SEQ}


def write_recipe(folder: Path, name: str, corpus: Path, stages: dict, trainer: dict | None = None,
                 model: dict | None = None) -> Path:
    """A tiny CPU recipe on `corpus`: stage fields given in `stages` over shared defaults."""
    recipe = {
        "name": name,
        "model": model or MODEL,
        "data": {"corpus": str(corpus)},
        "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", **(trainer or {})},
        "stage_defaults": {
            "seq_len": SEQ, "global_batch": GLOBAL, "micro_batch": MICRO,
            "optimizer": {"lr": 3.0e-3}, "schedule": {"kind": "cosine", "warmup": 0.1, "min_lr": 3.0e-4},
        },
        "stages": stages,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


INIT = {"tokens": 16 * STEP_TOKENS, "mixture": {"code": 0.5, "text": 0.5}, "init_from": {"ref": "scratch"},
        "val_interval_tokens": 8 * STEP_TOKENS, "checkpoint_interval_tokens": 8 * STEP_TOKENS,
        "snapshot_interval_tokens": 8 * STEP_TOKENS}
COOLDOWN = {"tokens": 6 * STEP_TOKENS, "mixture": {"text": 0.8, "code": 0.2}, "init_from": {"ref": "stage:init"},
            "schedule": {"kind": "linear", "warmup": 0, "final_lr": 1.0e-6}}


@pytest.fixture(scope="module")
def arm(small_corpus, tmp_path_factory):
    """A two-stage arm trained once in this process; (recipe path, home, results)."""
    folder = tmp_path_factory.mktemp("arm")
    path = write_recipe(folder, "arm", small_corpus, {"init": INIT, "cooldown": COOLDOWN})
    home = folder / "home"
    return path, home, train_recipe(path, home=home, command="pytest")


def test_snapshots_follow_the_stage_and_the_last_equals_its_final_weights(arm):
    _, _, (init, cooldown) = arm
    snapshots = sorted(init.dir.snapshots.iterdir())
    assert [p.name for p in snapshots] == [init.dir.snapshot(n * STEP_TOKENS).name for n in (8, 16)]
    assert not cooldown.dir.snapshots.exists()  # no interval: no snapshots
    final = load_pretrained(init.dir.final)[0].state_dict()
    halfway, last = (load_pretrained(path)[0].state_dict() for path in snapshots)  # folders codemix eval reads
    assert all(torch.equal(last[k], v) for k, v in final.items())
    assert any(not torch.equal(halfway[k], v) for k, v in final.items())


def test_stages_leave_weights_metrics_and_lineage(arm, small_corpus):
    path, home, (init, cooldown) = arm
    assert not init.reused and not cooldown.reused
    assert init.dir.path == home / "runs" / "arm" / f"init-{init.identity}"
    lineage = cooldown.lineage
    assert lineage.completed is True and lineage.stage == "cooldown" and lineage.steps == 6
    assert lineage.parent.identity == init.identity and lineage.parent.path == str(init.dir.path)
    assert lineage.corpus.tokenizer_hash == Corpus.open(small_corpus).tokenizer_hash
    # Token accounting from inside the training batches equals the stage plan, source by source.
    for stage in (init, cooldown):
        planned = {row["source"]: row["planned_tokens"] for row in stage.lineage.mixture}
        assert stage.lineage.tokens_per_source == planned
        assert sum(planned.values()) == stage.lineage.tokens
    both = {s: init.lineage.tokens_per_source[s] + cooldown.lineage.tokens_per_source[s]
            for s in lineage.tokens_per_source}
    assert lineage.cumulative_tokens_per_source == both
    model, cfg, _ = load_pretrained(cooldown.dir.final)
    assert cfg.d_model == 64 and cfg.vocab_size == 2048  # the vocabulary comes from the corpus
    end = read_training_checkpoint(cooldown.dir.last_checkpoint)
    assert end["global_step"] == 6
    assert all(torch.equal(end["state_dict"][f"model.{k}"], v) for k, v in model.state_dict().items())


def test_metrics_log_per_source_loss_tokens_and_the_stage_schedule(arm):
    path, _, (init, _) = arm
    rows = read_metrics(init.dir.metrics)
    train = [r for r in rows if r.get("train/loss")]
    assert [int(r["step"]) for r in train] == list(range(16))
    stage = load_recipe(path).stages["init"]
    for row in train:
        assert float(row["train/lr"]) == pytest.approx(lr_at(int(row["step"]), 16, stage.schedule, 3.0e-3), rel=1e-6)
    drawn = [s for s, n in init.lineage.tokens_per_source.items() if n]
    assert set(drawn) == {"code_python", "text_jargon"}
    assert all(row[f"train/loss/{s}"] for s in drawn for row in train)
    assert int(float(train[-1]["train/tokens"])) == 16 * STEP_TOKENS
    assert float(train[-1]["perf/tokens_per_s"]) > 0 and "perf/mfu" not in rows[0]  # CPU: no peak rate
    validated = [int(r["step"]) for r in rows if r.get("val/loss/text_jargon")]
    assert validated == [7, 15]  # every 8 steps and at the end
    assert all(r.get("val/loss/markup_pydocs") for r in rows if r.get("val/loss/text_jargon"))  # every source


def test_completed_stages_are_reused_also_by_another_recipe(arm, small_corpus, capsys):
    path, home, (init, cooldown) = arm
    before = init.dir.lineage_path.stat().st_mtime_ns
    again = train_recipe(path, home=home, command="pytest")
    assert [r.reused for r in again] == [True, True] and again[0].dir == init.dir
    assert init.dir.lineage_path.stat().st_mtime_ns == before

    other_cooldown = {**COOLDOWN, "mixture": {"text": 0.5, "code": 0.5}}
    other = write_recipe(path.parent, "other", small_corpus, {"init": INIT, "cooldown": other_cooldown})
    capsys.readouterr()
    shared, branched = train_recipe(other, home=home, command="pytest")
    assert shared.reused and shared.identity == init.identity and not branched.reused
    assert (home / "runs" / "other" / f"init-{init.identity}").resolve() == init.dir.path
    assert f"stage init [{init.identity}]: complete, reusing {init.dir.path}" in capsys.readouterr().out
    assert branched.lineage.parent.identity == init.identity

    from_recipe = {**COOLDOWN, "init_from": {"ref": f"recipe:{path}#init"}}
    third = write_recipe(path.parent, "third", small_corpus, {"cooldown": from_recipe})
    (cooled,) = train_recipe(third, home=home, command="pytest")
    assert cooled.identity == cooldown.identity and cooled.reused  # same stage, reached another way


def test_a_child_stage_starts_from_the_parent_weights_and_optionally_its_optimizer(arm, small_corpus):
    path, home, (init, _) = arm
    recipe = load_recipe(path, ["stages.cooldown.init_from.load_optimizer=true"])
    corpus = Corpus.open(small_corpus)
    plan = plan_recipe(recipe, lambda _: corpus, home).stage("cooldown")
    training = StageTraining(plan, resolve_parent(plan, {"init": init}, home, "pytest"), "pytest")
    module = training.build_module(fresh=True)
    final, _, _ = load_pretrained(init.dir.final)
    assert all(torch.equal(module.model.state_dict()[k], v) for k, v in final.state_dict().items())

    optimizer = module.configure_optimizers()["optimizer"]
    saved = read_training_checkpoint(init.dir.last_checkpoint)["optimizer_states"][0]["state"]
    for index, state in saved.items():
        assert torch.equal(optimizer.state_dict()["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(0, 6, recipe.stages["cooldown"].schedule, 3.0e-3))


def test_cli_errors_name_the_value_and_the_file(small_corpus, tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert f"{tmp_path / 'missing.yaml'}: no such file" in capsys.readouterr().err
    path = write_recipe(tmp_path, "bad", small_corpus, {"init": INIT})
    assert main(["train", str(path), "stages.init.micro_batch=3"]) == 2
    err = capsys.readouterr().err
    assert "stages.init.global_batch" in err and str(path) in err


def test_a_stage_whose_parent_has_another_architecture_is_refused(arm, small_corpus, tmp_path, capsys):
    path, home, (init, _) = arm
    wider = write_recipe(tmp_path, "wider", small_corpus,
                         {"cooldown": {**COOLDOWN, "init_from": {"ref": f"checkpoint:{init.dir.final}"}}})
    recipe = json.loads(json.dumps(yaml.safe_load(wider.read_text())))
    recipe["model"]["d_model"] = 128
    wider.write_text(yaml.safe_dump(recipe))
    assert main(["train", "--home", str(home), str(wider)]) == 2
    err = capsys.readouterr().err
    assert f"init_from 'checkpoint:{init.dir.final}'" in err and "differs from this stage's" in err


@pytest.mark.gpu
def test_a_bf16_stage_on_the_gpu_logs_mfu(small_corpus, tmp_path):
    path = write_recipe(tmp_path, "gpu", small_corpus, {"init": INIT},
                        trainer={"accelerator": "gpu", "precision": "bf16-mixed"})
    (stage,) = train_recipe(path, home=tmp_path / "home", command="pytest")
    rows = [r for r in read_metrics(stage.dir.metrics) if r.get("train/loss")]
    assert len(rows) == 16 and all(0 < float(r["train/loss"]) < 20 for r in rows)
    name = torch.cuda.get_device_name(0)
    if any(key in name for key in ("H100", "H200", "A100")):
        assert 0 < float(rows[-1]["perf/mfu"]) < 1


@pytest.mark.gpu
def test_the_470m_preset_trains_in_bf16_on_the_gpu(small_corpus, tmp_path):
    """The study's 470m decoder (its widths and depths, the corpus's vocabulary) takes bf16-mixed
    steps through the real Trainer with the fastest attention the GPU has."""
    init = {**INIT, "tokens": 4 * STEP_TOKENS, "val_interval_tokens": 0, "checkpoint_interval_tokens": 0,
            "optimizer": {"lr": 3.0e-4}}  # a 470M-parameter model's rate, not the tiny one's
    path = write_recipe(tmp_path, "gpu470m", small_corpus, {"init": init}, model={"preset": "470m", "max_seq_len": SEQ},
                        trainer={"accelerator": "gpu", "precision": "bf16-mixed"})
    (stage,) = train_recipe(path, home=tmp_path / "home", command="pytest")
    losses = [float(r["train/loss"]) for r in read_metrics(stage.dir.metrics) if r.get("train/loss")]
    assert len(losses) == 4 and all(0 < loss < 20 for loss in losses)
    assert losses[-1] < losses[0]
