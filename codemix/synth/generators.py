"""Generator models for `codemix data synth`: one interface, chosen by a spec string.

- `codemix:PATH`: a codemix checkpoint folder or stage dir, sampled with codemix's KV-cache generation;
- `hf:PATH`: a Hugging Face model folder (AutoModelForCausalLM, local files only);
- `openai:URL#MODEL`: an OpenAI-compatible /v1/chat/completions endpoint (bearer token from
  $CODEMIX_SYNTH_API_KEY when set).

The first two are completion models: they continue the problem's prompt (statement docstring +
signature) with the function body. The chat endpoint gets the statement and signature as a request
and answers with a whole function in a code block. Either way a generator returns, per problem and
sample, the solution code (starting at the function definition) that the sandbox will verify."""

import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from codemix.errors import ConfigError
from codemix.eval.chat_api import chat_completion, chat_endpoint
from codemix.synth.problems import Problem

API_KEY_ENV = "CODEMIX_SYNTH_API_KEY"
# A completion ends where a new top-level statement begins: the function is done.
COMPLETION_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert", "\n#", '\n"""')
SYSTEM = ("You write correct, self-contained Python 3 functions using only the standard library. Reply with "
          "exactly one ```python code block that defines the requested function (helpers allowed), and no "
          "tests, example calls, input() or printing.")
REQUEST = "{statement}\n\nWrite this function:\n\n```python\n{signature}\n```"
CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)


@dataclass(frozen=True)
class Sampling:
    samples: int = 1  # solutions per problem
    temperature: float = 0.0  # 0 = greedy
    max_new_tokens: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"--samples {self.samples}: must be at least 1")
        if self.samples > 1 and self.temperature <= 0:
            raise ConfigError(f"--samples {self.samples} needs --temperature > 0 (greedy samples are identical)")
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens {self.max_new_tokens}: must be at least 1")


class Generator(Protocol):
    spec: str  # what --generator said

    def solve(self, problems: Sequence[Problem], sampling: Sampling) -> list[list[str]]:
        """`sampling.samples` solutions (code from the `def` line on) per problem, in order."""

    def describe(self) -> dict:
        """Provenance: what model wrote the solutions, identified well enough to find it again."""


def open_generator(spec: str, device: str = "cpu", requests: int = 4) -> Generator:
    kind, _, target = spec.partition(":")
    if kind == "codemix" and target:
        return CodemixGenerator(spec, target, device)
    if kind == "hf" and target:
        return HfGenerator(spec, target, device)
    if kind == "openai" and target:
        url, _, model = target.rpartition("#")
        if not url or not model:
            raise ConfigError(f"--generator {spec!r}: an endpoint is openai:URL#MODEL, e.g. "
                              "openai:http://localhost:8000/v1#my-model")
        return ChatGenerator(spec, url, model, requests)
    raise ConfigError(f"--generator {spec!r}: expected codemix:CHECKPOINT_DIR, hf:MODEL_DIR or openai:URL#MODEL")


def extract_code(reply: str) -> str:
    """The first fenced code block of a chat reply, else the whole reply (some models answer bare code)."""
    found = CODE_BLOCK.search(reply)
    return (found.group(1) if found else reply).strip("\n") + "\n"


class CodemixGenerator:
    def __init__(self, spec: str, path: str, device: str):
        from codemix.eval.harness import load_model
        from codemix.eval.results import checkpoint_identity, resolve_target

        target = resolve_target(path)
        self.spec = spec
        self.model = load_model(target, device)
        self.identity = checkpoint_identity(target)

    def solve(self, problems: Sequence[Problem], sampling: Sampling) -> list[list[str]]:
        from codemix.eval.generation import GenerationConfig, generate

        cfg = GenerationConfig(max_new_tokens=sampling.max_new_tokens, stop=COMPLETION_STOP,
                               temperature=sampling.temperature, samples=sampling.samples, seed=sampling.seed)
        outputs = generate(self.model.decoder, self.model.tokenizer, [p.completion_prompt() for p in problems],
                           cfg, self.model.eos_id)
        return [[p.signature + "\n" + body for body in bodies] for p, bodies in zip(problems, outputs)]

    def describe(self) -> dict:
        return {"type": "codemix", "spec": self.spec, "checkpoint": self.identity}


class HfGenerator:
    def __init__(self, spec: str, path: str, device: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"--generator {spec!r}: {folder} is not a Hugging Face model folder (no config.json)")
        self.spec, self.folder, self.device = spec, folder, device
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="auto")  # as saved
        self.model = model.to(device).eval()

    def solve(self, problems: Sequence[Problem], sampling: Sampling) -> list[list[str]]:
        import torch

        from codemix.eval.generation import cut_at_stop

        torch.manual_seed(sampling.seed)  # transformers samples from torch's global generator
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        solutions = []
        for problem in problems:
            inputs = self.tokenizer(problem.completion_prompt(), return_tensors="pt",
                                    return_token_type_ids=False).to(self.device)
            sample = sampling.temperature > 0
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs, max_new_tokens=sampling.max_new_tokens, do_sample=sample,
                    temperature=sampling.temperature if sample else None, top_p=None, top_k=None,
                    num_return_sequences=sampling.samples, pad_token_id=pad,
                    stop_strings=list(COMPLETION_STOP), tokenizer=self.tokenizer)
            bodies = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            solutions.append([problem.signature + "\n" + cut_at_stop(b, COMPLETION_STOP)[0] for b in bodies])
        return solutions

    def describe(self) -> dict:
        config = json.loads((self.folder / "config.json").read_text())
        return {"type": "hf", "spec": self.spec, "folder": str(self.folder.resolve()),
                "architectures": config.get("architectures"), "name_or_path": config.get("_name_or_path")}


@dataclass
class ChatGenerator:
    spec: str
    url: str
    model: str
    requests: int = 4  # in flight at once: an endpoint serves many, one at a time leaves it idle
    timeout_s: float = 300.0

    def solve(self, problems: Sequence[Problem], sampling: Sampling) -> list[list[str]]:
        jobs = [(problem, index) for problem in problems for index in range(sampling.samples)]
        with ThreadPoolExecutor(max_workers=self.requests, thread_name_prefix="synth-request") as pool:
            replies = iter(pool.map(lambda job: self._reply(job[0], sampling, job[1]), jobs))
            return [[extract_code(next(replies)) for _ in range(sampling.samples)] for _ in problems]

    def _reply(self, problem: Problem, sampling: Sampling, index: int) -> str:
        body = {"model": self.model, "temperature": sampling.temperature, "max_tokens": sampling.max_new_tokens,
                "seed": sampling.seed + index, "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": REQUEST.format(statement=problem.statement,
                                                               signature=problem.signature)}]}
        return chat_completion(self.url, body, API_KEY_ENV, self.timeout_s, what=f"problem {problem.id!r}: generator")

    def describe(self) -> dict:
        return {"type": "openai", "spec": self.spec, "endpoint": chat_endpoint(self.url), "model": self.model}
