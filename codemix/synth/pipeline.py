"""Synthetic code as a corpus source: generate solutions, verify them in the sandbox, write the
verified ones as a jsonl that a data YAML reads as a source of kind `synthetic`, and (optionally) add
that source to a built corpus through the data package's API:

    - name: synth_python
      kind: synthetic
      licence: "<the generator's terms>"
      provenance: "codemix data synth (see synth.jsonl.summary.json)"
      reader: {type: jsonl, path: synth.jsonl}
"""

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from codemix.atomic import atomic_file, write_json_atomic
from codemix.config.data_spec import ReaderSpec, SourceSpec, check_source_spec
from codemix.data.build import add_sources, check_addable
from codemix.data.corpus import Corpus
from codemix.errors import CodemixError, ConfigError
from codemix.hashing import file_sha256
from codemix.sandbox import Limits, Sandbox
from codemix.synth.generators import Generator, Sampling, open_generator
from codemix.synth.problems import SHIPPED_PROBLEMS, Problem, load_problems
from codemix.synth.verify import Verdict, verify

Progress = Callable[[str], None]
SOURCE_NAME = "synthetic_python"


@dataclass(frozen=True)
class SynthOptions:
    """How solutions are generated and verified (the flags of `codemix data synth`)."""

    problems: Path = SHIPPED_PROBLEMS
    sampling: Sampling = field(default_factory=Sampling)
    timeout_s: float = 10.0  # wall seconds per program
    workers: int = 2  # programs run at once in the sandbox
    requests: int = 4  # requests in flight at once, for an openai: generator
    device: str = "cpu"  # for codemix: and hf: generators
    attempts: Path | None = None  # also write every attempt, verified or not, with its status

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout {self.timeout_s}: must be positive")
        if self.requests < 1:
            raise ConfigError(f"--requests {self.requests}: must be at least 1")

    def sandbox(self) -> Sandbox:
        return Sandbox(Limits(wall_s=self.timeout_s, cpu_s=max(1, int(self.timeout_s))), workers=self.workers)


def write_synthetic(generator: str, out: Path, options: SynthOptions = SynthOptions(), command: str = "",
                    progress: Progress = lambda line: None) -> dict:
    """The generator `generator` (codemix:DIR, hf:DIR or openai:URL#MODEL) solves the problems; the
    verified solutions go to `out` (jsonl), a summary to `<out>.summary.json`. Returns the summary."""
    problems = load_problems(options.problems)  # a broken problems file fails before a model loads
    sandbox = options.sandbox()
    model = open_generator(generator, options.device, options.requests)
    return synthesize(problems, options.problems, model, options.sampling, sandbox, out, command, options.attempts,
                      progress)


def add_synthetic_source(corpus_path: Path, generator: str, out: Path, options: SynthOptions = SynthOptions(),
                         source_name: str = SOURCE_NAME, command: str = "",
                         progress: Progress = lambda line: None) -> dict:
    """`write_synthetic`, then `out` joins the corpus at `corpus_path` as source `source_name` of kind
    `synthetic`, tokenized with the corpus's tokenizer (trained stages of the corpus stay valid).
    The corpus is checked before anything is generated. Returns the summary."""
    corpus = Corpus.open(corpus_path)
    source = synthetic_source(out, generator, options.problems, source_name)
    check_addable(corpus, [source])
    summary = write_synthetic(generator, out, options, command, progress)
    if not summary["written"]:
        raise CodemixError(f"no verified solution to add to {corpus.path}")
    add_sources(corpus.path, [source], processes=1, command=command, progress=progress)
    return summary


def synthetic_source(out: Path, generator: str, problems: Path, name: str = SOURCE_NAME) -> SourceSpec:
    """The source a data YAML (or `add_sources`) reads the verified solutions in `out` as."""
    source = SourceSpec(name=name, kind="synthetic", reader=ReaderSpec(type="jsonl", path=str(out.resolve())),
                        licence=f"output of the generator {generator}; problems from {problems}",
                        provenance=f"verified solutions, see {summary_path(out.resolve())}")
    check_source_spec(source, "--source-name")
    return source


def synthesize(problems: Sequence[Problem], problems_path: Path, generator: Generator, sampling: Sampling,
               sandbox: Sandbox, out: Path, command: str, attempts_out: Path | None = None,
               progress: Progress = lambda line: None) -> dict:
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
