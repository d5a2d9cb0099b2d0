"""Problems a generator solves: a statement, the `def` line, and assert-based tests; read from a jsonl.

A program is the statement (as the module docstring), the solution, a wrapper that makes the entry
point refuse to return anything but plain data, the tests, and a random marker printed last."""

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from codemix.errors import ConfigError

SHIPPED_PROBLEMS = Path(__file__).with_name("problems.jsonl")
FIELDS = ("id", "statement", "signature", "entry_point", "tests")
STATEMENT_WIDTH = 88  # columns of the statement docstring
# Wraps the entry point after the solution is defined (so the solution cannot replace the check).
PLAIN_RESULTS = '''
def _codemix_plain(value):
    kind = type(value)
    if kind in (list, tuple, set, frozenset):
        return all(_codemix_plain(item) for item in value)
    if kind is dict:
        return all(_codemix_plain(k) and _codemix_plain(v) for k, v in value.items())
    return kind in (int, float, complex, str, bytes, bool, type(None))


def _codemix_checked(function):
    def checked(*args, **kwargs):
        result = function(*args, **kwargs)
        if not _codemix_plain(result):
            raise AssertionError("returned " + type(result).__name__ + ", not plain data")
        return result
    return checked


{entry_point} = _codemix_checked({entry_point})
'''


@dataclass(frozen=True)
class Problem:
    id: str
    statement: str
    signature: str  # the `def` line, e.g. "def clamp(x: int, low: int, high: int) -> int:"
    entry_point: str
    tests: str  # assert statements calling entry_point
    reference: str | None = None  # a known-good solution from the `def` line on

    def header(self) -> str:
        """The statement as the module docstring that opens every program and output text."""
        paragraphs = [textwrap.fill(p, STATEMENT_WIDTH, break_on_hyphens=False)
                      for p in self.statement.strip().split("\n\n")]
        return '"""\n' + "\n\n".join(paragraphs) + '\n"""\n\n\n'

    def completion_prompt(self) -> str:
        return f"{self.header()}{self.signature}\n"

    def text(self, solution: str) -> str:
        """What enters the corpus: the statement, then the solution."""
        return self.header() + solution.strip("\n") + "\n"

    def program(self, solution: str, marker: str) -> str:
        checked = PLAIN_RESULTS.format(entry_point=self.entry_point)
        return f"{self.text(solution)}\n{checked}\n\n{self.tests.strip()}\n\nprint({marker!r})\n"


def load_problems(path: str | Path) -> list[Problem]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such problems file")
    problems, seen = [], set()
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: not JSON: {err}") from err
        missing = [f for f in FIELDS if not isinstance(row.get(f) if isinstance(row, dict) else None, str)
                   or not row[f].strip()]
        if missing:
            raise ConfigError(f"{where}: needs non-empty string fields {', '.join(missing)}")
        if not isinstance(row.get("reference", ""), str):
            raise ConfigError(f"{where}: reference must be a string (a solution from the def line on)")
        problem = Problem(**{f: row[f] for f in FIELDS}, reference=row.get("reference"))
        if not problem.signature.startswith(f"def {problem.entry_point}("):
            raise ConfigError(f"{where}: signature {problem.signature!r} does not define entry_point "
                              f"{problem.entry_point!r}")
        if problem.id in seen:
            raise ConfigError(f"{where}: problem id {problem.id!r} appears twice")
        seen.add(problem.id)
        problems.append(problem)
    if not problems:
        raise ConfigError(f"{path}: no problems")
    return problems
