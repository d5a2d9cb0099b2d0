"""In-loop continuous scores: a stage with val_bpb_tasks logs each task's gold-continuation bits per
byte at every validation, and at the end of the stage they equal `codemix eval`'s offline scores of
the stage's final weights (one implementation, codemix.eval.bpb); a bad task name is refused before
any stage trains."""

from pathlib import Path

import pytest
from test_train_stages import INIT, STEP_TOKENS, write_recipe

from codemix.eval.harness import evaluate
from codemix.eval.results import resolve_target
from codemix.eval.runner import EvalOptions
from codemix.eval.tasks.registry import resolve_tasks
from codemix.errors import ConfigError
from codemix.train.run import train_recipe
from codemix.train.stages import read_metrics

TASKS = ["piqa", "triviaqa", "humaneval"]  # one of each kind: multiple choice, generation, code
EXAMPLES = 3


def test_in_loop_bpb_equals_the_offline_evaluation_of_the_final_weights(small_corpus: Path, tmp_path: Path):
    stage = {**INIT, "tokens": 4 * STEP_TOKENS, "val_interval_tokens": 2 * STEP_TOKENS,
             "val_bpb_tasks": TASKS, "val_bpb_examples": EXAMPLES}
    stage.pop("snapshot_interval_tokens")
    recipe = write_recipe(tmp_path, "in-loop", small_corpus, {"pt": stage})
    (result,) = train_recipe(recipe, home=tmp_path / "home", command="pytest")
    rows = [row for row in read_metrics(result.dir.metrics) if row.get("val/bpb/piqa")]
    assert len(rows) == 2  # mid-stage and end-of-stage validations
    offline = evaluate(resolve_target(result.dir.final), resolve_tasks(None, TASKS), EvalOptions(limit=EXAMPLES),
                       ["pytest"], heldout_samples=0, progress=lambda _: None)
    last = rows[-1]
    for task in TASKS:
        assert float(last[f"val/bpb/{task}"]) == pytest.approx(offline["tasks"][task]["metrics"]["bpb"], rel=1e-5)
    for category in ("reasoning", "knowledge", "code"):
        assert float(last[f"val/bpb/{category}"]) == pytest.approx(offline["aggregate_bpb"][category]["score"], rel=1e-5)
    assert float(rows[0]["val/bpb/piqa"]) != float(last["val/bpb/piqa"])  # the weights moved between them


@pytest.mark.parametrize("change, trainer, message", [
    ({"val_bpb_tasks": ["piqa", "piqaa"]}, None, r"unknown task\(s\) \['piqaa'\]"),
    ({"val_bpb_tasks": ["piqa"], "val_bpb_examples": 0}, None, "must be at least 1"),
    ({"val_bpb_tasks": ["piqa"]}, {"strategy": "fsdp2"}, "scores the whole model in one process")])
def test_bad_in_loop_settings_are_refused_before_any_stage_trains(small_corpus: Path, tmp_path: Path, change, trainer,
                                                                   message):
    second = {**INIT, "tokens": 2 * STEP_TOKENS, "init_from": {"ref": "stage:pt"}, **change}
    recipe = write_recipe(tmp_path, "bad-in-loop", small_corpus, {"pt": {**INIT, "tokens": 2 * STEP_TOKENS},
                                                                   "next": second}, trainer=trainer)
    with pytest.raises(ConfigError, match=message) as refused:
        train_recipe(recipe, home=tmp_path / "home", command="pytest")
    assert str(refused.value).startswith(f"{recipe}: stages.next: val_bpb_")
    assert not (tmp_path / "home" / "runs").exists()
