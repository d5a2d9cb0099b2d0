"""What a task is: its instances (multiple choice, generation or code), where its few-shot examples
come from, and how it is scored. Loaders turn benchmark rows into these; scoring never sees rows."""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from codemix.errors import ConfigError

CATEGORIES = ("reasoning", "knowledge", "code", "extra")
FEWSHOT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class MultipleChoice:
    """Choice i is scored as log P(continuation_i | context_i); contexts differ only for tasks like
    WinoGrande where the option sits inside the sentence."""

    id: str
    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int

    def demonstration(self) -> str:
        return self.contexts[self.gold] + self.continuations[self.gold]

    def with_prefix(self, prefix: str) -> "MultipleChoice":
        return MultipleChoice(self.id, tuple(prefix + c for c in self.contexts), self.continuations, self.gold)


@dataclass(frozen=True)
class Generation:
    """Greedy answer to `prompt`, right if it matches any of `answers` after normalisation."""

    id: str
    prompt: str
    answers: tuple[str, ...]

    def demonstration(self) -> str:
        return f"{self.prompt} {self.answers[0]}"

    def with_prefix(self, prefix: str) -> "Generation":
        return Generation(self.id, prefix + self.prompt, self.answers)


@dataclass(frozen=True)
class CodeProblem:
    """The model completes `prompt`; `prompt + completion + tests` must exit 0 in the sandbox."""

    id: str
    prompt: str
    tests: str
    reference: str  # the dataset's own solution, as a completion of `prompt`

    def program(self, completion: str) -> str:
        return f"{self.prompt}{completion}\n\n{self.tests}\n"

    def demonstration(self) -> str:
        return self.prompt + self.reference

    def with_prefix(self, prefix: str) -> "CodeProblem":
        return CodeProblem(self.id, prefix + self.prompt, self.tests, self.reference)


Instance = MultipleChoice | Generation | CodeProblem


@dataclass
class TaskData:
    instances: list[Instance]
    version: dict  # package + version + sha of the files read
    fewshot_pool: list[Instance] | None = None  # a train/dev split where one ships; else the same split


@dataclass(frozen=True)
class TaskSpec:
    name: str
    category: str
    kind: str  # "multiple_choice" | "generation" | "code"
    load: Callable[[], TaskData]
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 32
    description: str = ""
    primary: str | None = None  # the metric averaged for the study; None = the kind's usual one

    @property
    def primary_metric(self) -> str:
        return self.primary or {"multiple_choice": "acc", "generation": "exact_match", "code": "pass@1"}[self.kind]


def with_fewshot(instances: Sequence[Instance], data: TaskData, k: int, seed: int, task: str) -> list[Instance]:
    """Prefix each instance with k solved examples, drawn (seeded per instance) from the task's
    train/dev split where it ships one, else from the same split without the instance itself."""
    if k == 0:
        return list(instances)
    pool = data.fewshot_pool if data.fewshot_pool is not None else data.instances
    if len(pool) <= k:
        raise ConfigError(f"task '{task}': {k}-shot asked but only {len(pool)} examples to draw from")
    shots = []
    for instance in instances:
        rng = random.Random(f"{seed}:{task}:{instance.id}")
        chosen = [c for c in rng.sample(pool, k + 1) if c.id != instance.id][:k]
        prefix = "".join(example.demonstration() + FEWSHOT_SEPARATOR for example in chosen)
        shots.append(instance.with_prefix(prefix))
    return shots


def subset(instances: Sequence[Instance], limit: int | None) -> list[Instance]:
    """The first `limit` instances: a fixed, reproducible subset for quick runs."""
    return list(instances if limit is None else instances[:limit])
