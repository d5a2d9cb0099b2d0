"""Verification: every solution runs in the sandbox against its problem's tests.

A program counts as verified only when it exits 0, its output ends with a random marker printed
after the tests, and every value the entry point returned is plain data (built-in types): so a
solution that exits before the tests or returns an object that equals everything fails. These are
the reward hacks generators are known for; the sandbox bounds what any program can do."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from codemix.sandbox import Sandbox, SandboxResult
from codemix.synth.problems import Problem

KEEP_STDERR = 2000  # characters of a failed program's stderr kept in the attempts log


@dataclass(frozen=True)
class Verdict:
    status: str  # a SandboxResult status, or "exited_early" (exit 0 without reaching the marker)
    returncode: int | None
    wall_s: float
    stderr: str

    @property
    def verified(self) -> bool:
        return self.status == "passed"


def verdict_of(result: SandboxResult, marker: str) -> Verdict:
    status = result.status
    if status == "passed" and not result.stdout.rstrip("\n").endswith(marker):
        status = "exited_early"
    return Verdict(status, result.returncode, round(result.wall_s, 3), result.stderr[-KEEP_STDERR:])


def verify(problems: Sequence[Problem], solutions: Sequence[Sequence[str]], sandbox: Sandbox) -> list[list[Verdict]]:
    """Run every solution against its problem's tests; verdicts in the shape of `solutions`."""
    jobs = [(problem, solution, secrets.token_hex(16))
            for problem, samples in zip(problems, solutions, strict=True) for solution in samples]
    results = iter(sandbox.run_many([problem.program(solution, marker) for problem, solution, marker in jobs]))
    verdicts = iter([verdict_of(next(results), marker) for _, _, marker in jobs])
    return [[next(verdicts) for _ in samples] for samples in solutions]
