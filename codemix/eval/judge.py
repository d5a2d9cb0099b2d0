"""Generative win-rate: a judge compares two checkpoints' answers to open-ended prompts.

Each prompt is judged twice, with the answers in both orders, so a judge's preference for the first
(or second) position cancels; a prompt counts as a win only when the two orders agree (or one is a
tie), otherwise as a tie. Every raw verdict is kept.

Judges: any OpenAI-compatible /v1/chat/completions endpoint (URL + model), or a local checkpoint
that picks the verdict it finds most likely."""

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from codemix.errors import ConfigError
from codemix.eval.chat_api import chat_completion
from codemix.eval.loglik import encode_pair, score
from codemix.eval.runner import Model
from codemix.eval.task_data import read_jsonl

PROMPTS = Path(__file__).with_name("prompts") / "open_ended.jsonl"
API_KEY_ENV = "CODEMIX_JUDGE_API_KEY"  # sent as a bearer token when set
SYSTEM = ("You are an impartial judge of answers written by AI assistants. Compare the two answers to "
          "the user's request for helpfulness, correctness, relevance and clarity. Do not let the order "
          "or the length of the answers sway you. Reply with a one-sentence reason, then the verdict on "
          "its own line: [[A]] if answer A is better, [[B]] if answer B is better, [[TIE]] if neither is.")
TEMPLATE = "[Request]\n{prompt}\n\n[Answer A]\n{first}\n\n[Answer B]\n{second}\n\nWhich answer is better?"
VERDICT = re.compile(r"\[\[(A|B|TIE)\]\]", re.IGNORECASE)


class Judge(Protocol):
    def judge(self, prompt: str, first: str, second: str) -> tuple[str, str]:
        """(verdict "A" | "B" | "TIE" | "INVALID", the judge's raw reply)."""


def parse_verdict(reply: str) -> str:
    found = VERDICT.findall(reply)
    return found[-1].upper() if found else "INVALID"


def load_prompts(path: str | Path = PROMPTS) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--prompts: {path}: no such file")
    prompts = read_jsonl(path)
    for line, row in enumerate(prompts, start=1):
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ConfigError(f"{path}:{line}: each line needs a non-empty \"prompt\" string")
        row.setdefault("id", f"prompt-{line}")
    return prompts


@dataclass
class HttpJudge:
    url: str
    model: str
    timeout_s: float = 120.0

    def judge(self, prompt: str, first: str, second: str) -> tuple[str, str]:
        body = {"model": self.model, "temperature": 0, "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": TEMPLATE.format(prompt=prompt, first=first, second=second)}]}
        reply = chat_completion(self.url, body, API_KEY_ENV, self.timeout_s, what="judge")
        return parse_verdict(reply), reply


@dataclass
class LocalJudge:
    """A local checkpoint as judge: the verdict whose tokens it finds most likely after the prompt."""

    model: Model

    def judge(self, prompt: str, first: str, second: str) -> tuple[str, str]:
        context = f"{SYSTEM}\n\n{TEMPLATE.format(prompt=prompt, first=first, second=second)}\nVerdict: [["
        options = ("A", "B", "TIE")
        max_len = self.model.decoder.cfg.max_seq_len
        pairs = [encode_pair(self.model.tokenizer, context, f"{o}]]", self.model.eos_id, max_len) for o in options]
        logprobs = [s.logprob for s in score(self.model.decoder, pairs)]
        best = max(range(len(options)), key=logprobs.__getitem__)
        return options[best], json.dumps(dict(zip(options, logprobs)))


def _outcome(forward: str, backward: str) -> str:
    """Combine the (A=first, B=second) verdict and the swapped one into "a" | "b" | "tie"."""
    votes = {"A": "a", "B": "b"}.get(forward, "tie"), {"A": "b", "B": "a"}.get(backward, "tie")
    decided = {v for v in votes if v != "tie"}
    return decided.pop() if len(decided) == 1 else "tie"


def win_rate(prompts: Sequence[dict], answers_a: Sequence[str], answers_b: Sequence[str], judge: Judge) -> dict:
    records, outcomes = [], Counter()
    for row, a, b in zip(prompts, answers_a, answers_b, strict=True):
        forward, forward_raw = judge.judge(row["prompt"], a, b)
        backward, backward_raw = judge.judge(row["prompt"], b, a)
        outcome = _outcome(forward, backward)
        outcomes[outcome] += 1
        records.append({"id": row["id"], "prompt": row["prompt"], "answer_a": a, "answer_b": b,
                        "verdict_a_first": forward, "verdict_b_first": backward,
                        "raw_a_first": forward_raw, "raw_b_first": backward_raw, "outcome": outcome})
    n = len(records)
    return {
        "prompts": n,
        "wins_a": outcomes["a"], "wins_b": outcomes["b"], "ties": outcomes["tie"],
        "win_rate_a": outcomes["a"] / n if n else None,
        "win_rate_b": outcomes["b"] / n if n else None,
        "tie_rate": outcomes["tie"] / n if n else None,
        "first_position_wins": sum((r["verdict_a_first"] == "A") + (r["verdict_b_first"] == "A") for r in records),
        "invalid_verdicts": sum((r["verdict_a_first"] == "INVALID") + (r["verdict_b_first"] == "INVALID")
                                for r in records),
        "records": records,
    }
