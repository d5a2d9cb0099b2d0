"""A user's own task: a local jsonl file and a small YAML that says how to read its rows.

    name: my_quiz
    kind: multiple_choice        # or generation
    category: extra              # reasoning | knowledge | extra (counts in that average)
    data: quiz.jsonl             # relative to the YAML file
    context: "Question: {question}\\nAnswer:"   # a format string over the row's fields
    choices: options             # multiple_choice: field holding the list of answer texts
    gold: label                  # multiple_choice: field holding the right index (or its text)
    answers: answers             # generation: field holding a string or a list of accepted strings
    stop: ["\\n"]
    max_new_tokens: 32
"""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from codemix.config.loading import load_typed
from codemix.errors import ConfigError
from codemix.eval.task_data import data_version, read_jsonl
from codemix.eval.tasks.base import CATEGORIES, Generation, MultipleChoice, TaskData, TaskSpec

KINDS = ("multiple_choice", "generation")


@dataclass
class UserTaskConfig:
    name: str
    kind: str
    data: str
    context: str
    category: str = "extra"
    choices: str | None = None
    gold: str | None = None
    answers: str | None = None
    stop: list[str] = field(default_factory=lambda: ["\n"])
    max_new_tokens: int = 32


def load_user_task(path: str | Path) -> TaskSpec:
    path = Path(path)
    cfg = load_typed(UserTaskConfig, path)
    if cfg.kind not in KINDS:
        raise ConfigError(f"{path}: kind '{cfg.kind}' is not one of {KINDS}")
    if cfg.category not in CATEGORIES or cfg.category == "code":
        raise ConfigError(f"{path}: category '{cfg.category}' must be reasoning, knowledge or extra")
    needed = ("choices", "gold") if cfg.kind == "multiple_choice" else ("answers",)
    for key in needed:
        if getattr(cfg, key) is None:
            raise ConfigError(f"{path}: a {cfg.kind} task needs '{key}' (the field that holds it)")
    data = (path.parent / cfg.data).resolve()
    if not data.is_file():
        raise ConfigError(f"{path}: data file '{cfg.data}' not found (looked at {data})")
    return TaskSpec(cfg.name, cfg.category, cfg.kind, partial(_load, cfg, data, path),
                    stop=tuple(cfg.stop), max_new_tokens=cfg.max_new_tokens, description=f"user task {path}")


def _load(cfg: UserTaskConfig, data: Path, origin: Path) -> TaskData:
    instances = []
    for line, row in enumerate(read_jsonl(data), start=1):
        where = f"{data}:{line}"
        try:
            context = cfg.context.format(**row)
            instances.append(_multiple_choice(cfg, row, context, where) if cfg.kind == "multiple_choice"
                             else _generation(cfg, row, context, where))
        except KeyError as err:
            raise ConfigError(f"{where}: row has no field {err} (named in {origin})") from err
    return TaskData(instances, data_version(None, [data]))


def _multiple_choice(cfg: UserTaskConfig, row: dict, context: str, where: str) -> MultipleChoice:
    choices = [str(c) for c in row[cfg.choices]]
    gold = row[cfg.gold]
    if isinstance(gold, str) and not gold.isdigit():
        if gold not in choices:
            raise ConfigError(f"{where}: gold answer {gold!r} is not among the choices {choices}")
        gold = choices.index(gold)
    gold = int(gold)
    if not 0 <= gold < len(choices):
        raise ConfigError(f"{where}: gold index {gold} out of range for {len(choices)} choices")
    return MultipleChoice(f"{cfg.name}-{where.rsplit(':', 1)[1]}", (context,) * len(choices),
                          tuple(" " + c for c in choices), gold)


def _generation(cfg: UserTaskConfig, row: dict, context: str, where: str) -> Generation:
    answers = row[cfg.answers]
    answers = (answers,) if isinstance(answers, str) else tuple(str(a) for a in answers)
    if not answers:
        raise ConfigError(f"{where}: no accepted answers in field '{cfg.answers}'")
    return Generation(f"{cfg.name}-{where.rsplit(':', 1)[1]}", context, answers)
