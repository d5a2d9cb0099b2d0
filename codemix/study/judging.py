"""`codemix reproduce --judge SPEC`: the study's generative win-rates, judged once the stages are evaluated.

Pairs, from the report's rows (so they match Table 2 and Fig 6 exactly):
- each arm's cooldown against the text-only arm's cooldown of the same kind (with or without code);
- within each arm, each cooldown against the stage it starts from (cooldown vs no cooldown).
With seeds, the k-th seed of one side against the k-th of the other. Each stage answers the prompts
once (greedy, `max_new_tokens`), whichever pairs it is in; the judge (eval/judge.py: both answer orders)
decides each pair, and the result goes to <report>/winrates/<identity A>-vs-<identity B>.json, the
`codemix eval winrate` format the report reads. A file that judged the same weights with the same
judge, prompts and answer length is kept, so a re-run judges nothing again."""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from codemix.analysis.comparisons import COOLDOWN_WITH_CODE, COOLDOWN_WITHOUT_CODE, StudyComparisons
from codemix.analysis.runs import StageRun
from codemix.analysis.table import Row
from codemix.data.corpus import read_json
from codemix.errors import ConfigError

WINRATES = "winrates"
LOCAL = "local:"
DEFAULT_MODEL = "judge"
MAX_NEW_TOKENS = 128
CROSS_ARM = "cooldown vs text-only's cooldown"
WITHIN_ARM = "cooldown vs no cooldown"

Say = Callable[[str], None]


@dataclass(frozen=True)
class JudgeSpec:
    """An OpenAI-compatible endpoint (base URL …/v1, or …/v1/chat/completions) with a model name, or
    `local:CHECKPOINT_DIR` (a local checkpoint picks the likeliest verdict): as `codemix eval winrate`."""

    endpoint: str
    model: str = DEFAULT_MODEL

    @classmethod
    def parse(cls, spec: str, model: str | None) -> "JudgeSpec":
        """Checked before any training: a bad judge fails the run up front."""
        if spec.startswith(LOCAL):
            from codemix.eval.results import resolve_target

            try:
                resolve_target(spec[len(LOCAL):])
            except ConfigError as err:
                raise ConfigError(f"--judge {spec}: {err}") from err
        elif not spec.startswith(("http://", "https://")):
            raise ConfigError(f"--judge {spec!r}: expected an http(s):// chat-completions URL or local:CHECKPOINT_DIR")
        return cls(spec, model or DEFAULT_MODEL)

    def make_judge(self, device: str = "cpu"):
        from codemix.eval.harness import load_model
        from codemix.eval.judge import HttpJudge, LocalJudge
        from codemix.eval.results import resolve_target

        if self.endpoint.startswith(LOCAL):
            return LocalJudge(load_model(resolve_target(self.endpoint[len(LOCAL):]), device))
        return HttpJudge(self.endpoint, self.model)

    def to_json(self) -> dict:
        return {"endpoint": self.endpoint, "model": self.model}


@dataclass(frozen=True)
class Pair:
    kind: str  # CROSS_ARM or WITHIN_ARM
    a: StageRun
    b: StageRun

    @property
    def file_name(self) -> str:
        return f"{self.a.identity}-vs-{self.b.identity}.json"


def judged_pairs(rows: list[Row], comparisons: StudyComparisons) -> list[Pair]:
    """The study's win-rate pairs (module docstring), each once, seeds paired in order."""
    row_pairs = [(CROSS_ARM, row, row.baseline) for row in rows
                 if row.is_cooldown and row.baseline is not None and row.baseline is not row and row.baseline.is_cooldown]
    row_pairs += [(WITHIN_ARM, c.arm, c.reference) for c in comparisons.cooldown
                  if c.kind in (COOLDOWN_WITH_CODE, COOLDOWN_WITHOUT_CODE)]
    pairs: dict[tuple[str, str], Pair] = {}
    for kind, a, b in row_pairs:
        for run_a, run_b in zip(a.seed_runs, b.seed_runs):
            if run_a.identity != run_b.identity:
                pairs.setdefault((run_a.identity, run_b.identity), Pair(kind, run_a, run_b))
    return list(pairs.values())


def judge_study(pairs: Sequence[Pair], spec: JudgeSpec, prompts_file: Path | None, limit: int, out: Path,
                command: Sequence[str], say: Say, max_new_tokens: int = MAX_NEW_TOKENS) -> list[Path]:
    """Judge every pair whose win-rate file is not current; returns every pair's file."""
    from codemix.eval.judge import PROMPTS, load_prompts, win_rate
    from codemix.eval.results import checkpoint_identity, resolve_target, write_results

    prompts = load_prompts(prompts_file or PROMPTS)[:limit]
    options = {"prompts": _prompts_sha256(prompts), "prompt_count": len(prompts), "max_new_tokens": max_new_tokens}
    folder = out / WINRATES
    stale = [pair for pair in pairs if not _is_current(folder / pair.file_name, pair, spec, options)]
    say(f"win-rates: {len(pairs)} pairs, {len(pairs) - len(stale)} already judged; {len(prompts)} prompts x 2 orders "
        f"by {spec.endpoint} ({spec.model})")
    answers: dict[str, list[str]] = {}
    judge = spec.make_judge() if stale else None
    for number, pair in enumerate(stale, start=1):
        for run in (pair.a, pair.b):
            if run.identity not in answers:
                answers[run.identity] = _answers(run, prompts, max_new_tokens)
        say(f"[judge {number}/{len(stale)}] {pair.kind}: {pair.a.label} (seed {pair.a.seed}) vs {pair.b.label} "
            f"(seed {pair.b.seed})")
        result = win_rate(prompts, answers[pair.a.identity], answers[pair.b.identity], judge)
        result.update(command=list(command), judge=spec.to_json(), options=options, comparison=pair.kind,
                      a=checkpoint_identity(resolve_target(pair.a.path)),
                      b=checkpoint_identity(resolve_target(pair.b.path)))
        write_results(folder / pair.file_name, result)
        say(f"    A wins {result['wins_a']}, B wins {result['wins_b']}, ties {result['ties']} of {result['prompts']}")
    return [folder / pair.file_name for pair in pairs]


def _answers(run: StageRun, prompts: list[dict], max_new_tokens: int) -> list[str]:
    """The stage's greedy answers to the prompts."""
    from codemix.eval.generation import GenerationConfig, generate
    from codemix.eval.harness import load_model
    from codemix.eval.results import resolve_target

    model = load_model(resolve_target(run.path))
    texts = generate(model.decoder, model.tokenizer, [p["prompt"] for p in prompts],
                     GenerationConfig(max_new_tokens=max_new_tokens), model.eos_id)
    return [text[0].strip() for text in texts]


def _prompts_sha256(prompts: list[dict]) -> str:
    text = json.dumps([[p["id"], p["prompt"]] for p in prompts], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_current(path: Path, pair: Pair, spec: JudgeSpec, options: dict) -> bool:
    """Whether `path` judged these two stages' current weights with this judge and these options."""
    from codemix.eval.results import scored_current_weights

    if not path.is_file():
        return False
    try:
        found = read_json(path)
        sides = [found[side] for side in ("a", "b")]
        return (found.get("judge") == spec.to_json() and found.get("options") == options
                and [side.get("identity") for side in sides] == [pair.a.identity, pair.b.identity]
                and all(scored_current_weights(side) for side in sides))
    except (ConfigError, KeyError, TypeError, AttributeError):
        return False  # unreadable or from another format: judge again
