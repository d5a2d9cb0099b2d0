"""`codemix data synth`: verified synthetic code as a source.

A generator model (synth_generators.py) writes Python solutions to problem statements; each runs in
the sandbox against its problem's assert-based tests, and only the verified ones are written, as a
jsonl a data YAML reads as a source of kind `synthetic`:

    - name: synth_python
      kind: synthetic
      licence: "<the generator's terms>"
      provenance: "codemix data synth (see synth.jsonl.summary.json)"
      reader: {type: jsonl, path: synth.jsonl}

A program counts as verified only when it exits 0, its output ends with a random marker printed
after the tests, and every value the entry point returned is plain data (built-in types): so a
solution that exits before the tests or returns an object that equals everything fails. These are
the reward hacks generators are known for; the sandbox bounds what any program can do."""

import argparse
import hashlib
import json
import secrets
import shlex
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from codemix.atomic import atomic_file, write_json_atomic
from codemix.config.data_spec import ReaderSpec, SourceSpec, check_source_spec
from codemix.data.corpus import Corpus, resolve_corpus
from codemix.data.synth_generators import Generator, Sampling, open_generator
from codemix.errors import CodemixError, ConfigError
from codemix.sandbox import Limits, Sandbox, SandboxResult

SHIPPED_PROBLEMS = Path(__file__).with_name("synth_problems.jsonl")
FIELDS = ("id", "statement", "signature", "entry_point", "tests")
STATEMENT_WIDTH = 88  # columns of the statement docstring
KEEP_STDERR = 2000  # characters of a failed program's stderr kept in the attempts log
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


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthesize(problems: Sequence[Problem], problems_path: Path, generator: Generator, sampling: Sampling,
               sandbox: Sandbox, out: Path, command: str, attempts_out: Path | None = None,
               progress: Callable[[str], None] = lambda line: None) -> dict:
    """Generate, verify, and write the verified solutions to `out` (jsonl) with `<out>.summary.json`
    beside it; returns the summary. `problems` were loaded from `problems_path` (its provenance)."""
    progress(f"generating {sampling.samples} solution(s) for each of {len(problems)} problems with {generator.spec}")
    solutions = generator.solve(problems, sampling)
    progress(f"verifying {sum(map(len, solutions))} solutions in the sandbox ({sandbox.isolation})")
    verdicts = verify(problems, solutions, sandbox)
    provenance = {"problems": str(problems_path.resolve()), "problems_sha256": file_sha256(problems_path),
                  "generator": generator.describe(), "sampling": asdict(sampling), "sandbox": sandbox.describe(),
                  "command": command, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    attempts = [{"problem_id": problem.id, "sample": index, "text": problem.text(solution),
                 "verification": asdict(verdict)}
                for problem, samples, checks in zip(problems, solutions, verdicts)
                for index, (solution, verdict) in enumerate(zip(samples, checks))]
    kept, texts = [], set()
    for attempt in attempts:
        if attempt["verification"]["status"] == "passed" and attempt["text"] not in texts:
            texts.add(attempt["text"])
            kept.append({"text": attempt["text"], "problem_id": attempt["problem_id"], "generator": generator.spec,
                         "sample": attempt["sample"], "verification": _brief(attempt["verification"]),
                         "provenance": provenance})
    summary = _summary(problems, verdicts, len(kept), provenance)
    if attempts_out is not None:
        _write_jsonl_atomic(attempts_out, attempts)
    _write_jsonl_atomic(out, kept)
    write_json_atomic(summary_path(out), summary)
    return summary


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


def _brief(verification: dict) -> dict:
    return {k: v for k, v in verification.items() if k != "stderr"}


def _summary(problems: Sequence[Problem], verdicts: list[list[Verdict]], written: int, provenance: dict) -> dict:
    statuses = Counter(v.status for checks in verdicts for v in checks)
    attempted = sum(statuses.values())
    verified = statuses["passed"]
    return {"attempted": attempted, "verified": verified, "rate": verified / attempted if attempted else 0.0,
            "written": written, "duplicates_dropped": verified - written,
            "problems": len(problems), "problems_solved": sum(any(v.verified for v in checks) for checks in verdicts),
            "statuses": dict(sorted(statuses.items())),
            "per_problem": {p.id: sum(v.verified for v in checks) for p, checks in zip(problems, verdicts)},
            "provenance": provenance}


def _write_jsonl_atomic(path: Path, rows: Sequence[dict]) -> None:
    with atomic_file(path, "w") as out:
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def add_synth_parser(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser("synth", help="a generator model writes solutions to problems; "
                                                "verified ones become a synthetic source (jsonl)")
    synth.add_argument("problems", nargs="?", type=Path, default=SHIPPED_PROBLEMS,
                       help="jsonl of problems (id, statement, signature, entry_point, tests, optional reference); "
                            "default: the shipped set")
    synth.add_argument("--generator", required=True, metavar="SPEC",
                       help="codemix:CHECKPOINT_DIR, hf:MODEL_DIR or openai:URL#MODEL")
    synth.add_argument("--out", required=True, type=Path, help="output jsonl (a summary goes to OUT.summary.json)")
    synth.add_argument("--samples", type=int, default=1, help="solutions per problem (default: 1)")
    synth.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    synth.add_argument("--max-new-tokens", type=int, default=512)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=2, help="programs run in parallel in the sandbox")
    synth.add_argument("--timeout", type=float, default=10.0, help="wall seconds per program")
    synth.add_argument("--attempts", type=Path, help="also write every attempt, verified or not, with its status")
    synth.add_argument("--requests", type=int, default=4, help="for openai: requests in flight at once")
    synth.add_argument("--device", default="cpu", help="for codemix: and hf: generators")
    synth.add_argument("--add-to", metavar="CORPUS",
                       help="then add OUT to this corpus (folder or name under <home>/corpora) as a source of kind "
                            "`synthetic`, tokenized with the corpus's tokenizer (`codemix data add`)")
    synth.add_argument("--source-name", default="synthetic_python", help="its name there (default: synthetic_python)")
    synth.add_argument("--home", help="codemix home for --add-to (default: $CODEMIX_HOME, else ./.codemix)")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout}: must be positive")
    if args.requests < 1:
        raise ConfigError(f"--requests {args.requests}: must be at least 1")
    sampling = Sampling(args.samples, args.temperature, args.max_new_tokens, args.seed)
    sandbox = Sandbox(Limits(wall_s=args.timeout, cpu_s=max(1, int(args.timeout))), workers=args.workers)
    problems = load_problems(args.problems)  # a broken problems file fails before a model loads
    target = _addable_corpus(args) if args.add_to else None
    generator = open_generator(args.generator, args.device, args.requests)
    command = shlex.join(["codemix", "data", "synth", str(args.problems), "--generator", args.generator,
                          "--samples", str(args.samples), "--temperature", str(args.temperature),
                          "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed),
                          "--timeout", str(args.timeout), "--out", str(args.out)])
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    summary = synthesize(problems, args.problems, generator, sampling, sandbox, args.out, command, args.attempts, say)
    print(f"{summary['verified']} of {summary['attempted']} solutions verified ({100 * summary['rate']:.1f}%), "
          f"{summary['problems_solved']} of {summary['problems']} problems solved; "
          f"{summary['written']} written to {args.out}")
    if target is not None:
        from codemix.data.cli import add_to_corpus

        if not summary["written"]:
            raise CodemixError(f"no verified solution to add to {target[0].path}")
        add_to_corpus(target[0].path, [target[1]], processes=1,
                      command=shlex.join(["codemix", "data", "synth", "--add-to", args.add_to, "--out", str(args.out)]))
    return 0


def _addable_corpus(args: argparse.Namespace) -> tuple["Corpus", SourceSpec]:
    """The corpus named by --add-to and the source OUT will be there, checked before any generation."""
    from codemix.data.build import check_addable

    corpus = Corpus.open(resolve_corpus(args.add_to, args.home))
    reader = ReaderSpec(type="jsonl", path=str(args.out.resolve()))
    source = SourceSpec(name=args.source_name, kind="synthetic", reader=reader,
                        licence=f"output of the generator {args.generator}; problems from {args.problems}",
                        provenance=f"verified solutions, see {summary_path(args.out.resolve())}")
    check_source_spec(source, "--source-name")
    check_addable(corpus, [source])
    return corpus, source
