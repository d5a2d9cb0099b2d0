"""Benchmark data as installed packages ship it: every task loads with its documented count, the
study's unavailable tasks are named, k-shot prompts are drawn as promised, and the reference
solutions of the code tasks pass in the sandbox."""

import json

import pytest

from codemix.errors import ConfigError
from codemix.eval.tasks.base import Generation, MultipleChoice, with_fewshot
from codemix.eval.tasks.registry import SUITES, TASKS, UNAVAILABLE, resolve_tasks
from codemix.eval.tasks.user import load_user_task
from codemix.sandbox import Limits, Sandbox

COUNTS = {"boolq": 3270, "piqa": 1838, "sciq": 1000, "social_iqa": 1954, "cb": 56, "copa": 100,
          "hellaswag": 10042, "winogrande": 1267, "arc_easy": 570, "triviaqa": 7993, "nq_open": 3610,
          "humaneval": 164, "mbpp": 500, "arc_challenge": 299, "openbookqa": 500, "mmlu": 14042}


@pytest.fixture(scope="module")
def loaded():
    return {name: spec.load() for name, spec in TASKS.items()}


def test_every_task_loads_with_its_count_a_version_and_valid_instances(loaded):
    assert {name: len(data.instances) for name, data in loaded.items()} == COUNTS
    for name, data in loaded.items():
        assert len(data.version["sha256"]) == 16 and data.version["version"], name
        assert len({inst.id for inst in data.instances}) == len(data.instances), f"{name}: duplicate ids"
        for inst in data.instances:
            if isinstance(inst, MultipleChoice):
                assert 0 <= inst.gold < len(inst.continuations) == len(inst.contexts) >= 2, inst.id
            elif isinstance(inst, Generation):
                assert inst.answers and inst.prompt.endswith("Answer:"), inst.id
    assert len(loaded["mmlu"].fewshot_pool) == 285  # 57 subjects x 5 dev questions


def test_paper_suite_is_the_study_list_and_names_what_is_unavailable():
    assert SUITES["paper"] == ["boolq", "piqa", "sciq", "social_iqa", "cb", "copa", "hellaswag", "winogrande",
                               "arc_easy", "triviaqa", "nq_open", "humaneval", "mbpp"]
    assert set(UNAVAILABLE) == {"storycloze", "quac"}
    with pytest.raises(ConfigError, match="storycloze.*licence"):
        resolve_tasks("paper", ["boolq", "storycloze"])
    with pytest.raises(ConfigError, match="'nope'"):
        resolve_tasks("nope", None)


def test_fewshot_draws_k_other_examples_deterministically(loaded):
    data = loaded["copa"]
    first = with_fewshot(data.instances[:5], data, 3, seed=7, task="copa")
    again = with_fewshot(data.instances[:5], data, 3, seed=7, task="copa")
    other_seed = with_fewshot(data.instances[:5], data, 3, seed=8, task="copa")
    assert first == again and first != other_seed
    for original, shot in zip(data.instances, first):
        prefix = shot.contexts[0][: -len(original.contexts[0])]
        assert prefix.count("\n\n") == 3 and original.demonstration() not in prefix
        assert shot.continuations == original.continuations and shot.gold == original.gold
    mmlu = loaded["mmlu"]
    shot = with_fewshot(mmlu.instances[:1], mmlu, 5, seed=0, task="mmlu")[0]
    dev_demos = {d.demonstration() for d in mmlu.fewshot_pool}
    assert sum(part in dev_demos for part in shot.contexts[0].split("\n\n")[:-1]) == 5
    with pytest.raises(ConfigError, match="only"):
        with_fewshot(data.instances[:1], type(data)(data.instances[:2], {}), 3, 0, "copa")


def test_user_task_errors_name_the_file_and_the_field(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "x", "opts": ["a", "b"], "gold": "c"}) + "\n")
    yaml = tmp_path / "t.yaml"
    yaml.write_text("name: t\nkind: multiple_choice\ndata: d.jsonl\ncontext: '{q}'\nchoices: opts\ngold: gold\n")
    with pytest.raises(ConfigError, match=r"d.jsonl:1: gold answer 'c' is not among"):
        load_user_task(yaml).load()
    yaml.write_text("name: t\nkind: multiple_choice\ndata: d.jsonl\ncontext: '{question}'\nchoices: opts\ngold: gold\n")
    with pytest.raises(ConfigError, match=r"d.jsonl:1: row has no field 'question'"):
        load_user_task(yaml).load()
    yaml.write_text("name: t\nkind: multiple_choice\ndata: d.jsonl\ncontext: '{q}'\nchoises: opts\n")
    with pytest.raises(ConfigError, match=r"t.yaml.*choises"):
        load_user_task(yaml)
    yaml.write_text("name: t\nkind: generation\ndata: missing.jsonl\ncontext: '{q}'\nanswers: a\n")
    with pytest.raises(ConfigError, match="missing.jsonl"):
        load_user_task(yaml)


def _failures(name: str, loaded) -> list[tuple[str, str, str]]:
    problems = loaded[name].instances
    results = Sandbox(Limits(wall_s=20, cpu_s=20), workers=2).run_many(p.program(p.reference) for p in problems)
    return [(p.id, r.status, r.stderr[-300:]) for p, r in zip(problems, results) if not r.passed]


def test_all_humaneval_canonical_solutions_pass(loaded):
    assert _failures("humaneval", loaded) == []


@pytest.mark.slow
def test_all_mbpp_reference_solutions_pass(loaded):
    """All 500 of the test split pass as shipped (prompt + reference + setup + asserts)."""
    assert _failures("mbpp", loaded) == []


def test_a_wrong_solution_fails(loaded):
    problem = loaded["humaneval"].instances[0]
    broken = problem.reference.replace("return True", "return False")
    result = Sandbox(Limits(wall_s=10)).run(problem.program(broken))
    assert result.status == "failed" and "AssertionError" in result.stderr
