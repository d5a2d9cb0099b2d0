"""Scoring one task on one model: multiple choice by log-likelihood, knowledge by greedy generation
and exact match, code by sampling completions and running them in the sandbox."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from codemix.errors import CodemixError, ConfigError
from codemix.eval.bpb import add_gold_bpb
from codemix.eval.generation import GenerationConfig, generate
from codemix.eval.loglik import encode_pair, score
from codemix.eval.metrics import exact_match, pass_at_k
from codemix.eval.tasks.base import TaskSpec, subset, with_fewshot
from codemix.model.transformer import Decoder
from codemix.sandbox import Sandbox


@dataclass
class EvalOptions:
    num_fewshot: int = 0
    seed: int = 1234
    limit: int | None = None  # first N instances of each task
    code_limit: int | None = None  # first N of each code task instead (generation + sandbox cost the most)
    batch_size: int = 16
    code_samples: int = 1  # n completions per code problem
    code_temperature: float = 0.0  # 0 = greedy; must be > 0 when code_samples > 1
    pass_ks: tuple[int, ...] = (1,)
    sandbox: Sandbox = field(default_factory=Sandbox)

    def __post_init__(self) -> None:
        if self.code_samples > 1 and self.code_temperature <= 0:
            raise ConfigError(f"code_samples={self.code_samples} needs code_temperature > 0 (greedy samples are identical)")
        if 1 not in self.pass_ks or max(self.pass_ks) > self.code_samples:
            raise ConfigError(f"pass_ks {self.pass_ks} must include 1 and not exceed code_samples={self.code_samples}")

    def recorded(self) -> dict:
        """The options a results file records (its "options"): what makes two evaluations' scores alike."""
        return {"num_fewshot": self.num_fewshot, "seed": self.seed, "limit": self.limit,
                "code_limit": self.code_limit, "code_samples": self.code_samples,
                "code_temperature": self.code_temperature, "pass_ks": list(self.pass_ks)}


def check_limits(limit: int | None, code_limit: int | None) -> None:
    """--limit and --code-limit: None (every example) or at least 1."""
    for flag, value in (("--limit", limit), ("--code-limit", code_limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")


class NonFiniteScores(CodemixError):
    """NaN or inf log-likelihoods: the weights are broken, and every task would score noise."""


@dataclass
class Model:
    """What scoring needs: the decoder, its tokenizer, the id that ends a document, and where the
    weights came from (named in errors)."""

    decoder: Decoder
    tokenizer: Tokenizer
    eos_id: int
    weights: str = "the model"


def run_task(spec: TaskSpec, model: Model, options: EvalOptions) -> dict:
    data = spec.load()
    limit = options.code_limit if spec.kind == "code" and options.code_limit is not None else options.limit
    instances = with_fewshot(subset(data.instances, limit), data, options.num_fewshot, options.seed, spec.name)
    records, metrics = RUNNERS[spec.kind](spec, instances, model, options)
    add_gold_bpb(instances, records, metrics, model, options.batch_size)  # the continuous score beside it
    return {
        "task": spec.name, "category": spec.category, "kind": spec.kind, "primary_metric": spec.primary_metric,
        "score": metrics[spec.primary_metric], "metrics": metrics, "num_fewshot": options.num_fewshot,
        "counts": {"available": len(data.instances), "scored": len(instances)},
        "version": data.version, "records": records,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def run_multiple_choice(spec, instances, model: Model, options: EvalOptions) -> tuple[list[dict], dict]:
    max_len = model.decoder.cfg.max_seq_len
    pairs = [encode_pair(model.tokenizer, ctx, cont, model.eos_id, max_len)
             for inst in instances for ctx, cont in zip(inst.contexts, inst.continuations)]
    scored = iter(score(model.decoder, pairs, options.batch_size))
    records = []
    for inst in instances:
        logprobs = [next(scored).logprob for _ in inst.continuations]
        if not all(math.isfinite(lp) for lp in logprobs):
            raise NonFiniteScores(f"{model.weights}: log-likelihoods on {spec.name} ({inst.id}) are {logprobs}: "
                                  "the weights are not finite numbers; retrain or restore this checkpoint")
        per_char = [lp / max(1, len(cont)) for lp, cont in zip(logprobs, inst.continuations)]
        predicted, predicted_norm = _argmax(logprobs), _argmax(per_char)
        records.append({"id": inst.id, "prompt": inst.contexts[inst.gold], "choices": list(inst.continuations),
                        "gold": inst.gold, "logprobs": logprobs, "prediction": predicted,
                        "acc": float(predicted == inst.gold), "acc_norm": float(predicted_norm == inst.gold)})
    return records, {m: _mean([r[m] for r in records]) for m in ("acc", "acc_norm")}


def run_generation(spec, instances, model: Model, options: EvalOptions) -> tuple[list[dict], dict]:
    cfg = GenerationConfig(max_new_tokens=spec.max_new_tokens, stop=spec.stop, batch_size=options.batch_size)
    outputs = generate(model.decoder, model.tokenizer, [i.prompt for i in instances], cfg, model.eos_id)
    records = []
    for inst, (prediction,) in zip(instances, outputs):
        records.append({"id": inst.id, "prompt": inst.prompt, "prediction": prediction.strip(),
                        "answers": list(inst.answers), "exact_match": float(exact_match(prediction, inst.answers))})
    return records, {"exact_match": _mean([r["exact_match"] for r in records])}


def run_code(spec, instances, model: Model, options: EvalOptions) -> tuple[list[dict], dict]:
    n = options.code_samples
    cfg = GenerationConfig(max_new_tokens=spec.max_new_tokens, stop=spec.stop, temperature=options.code_temperature,
                           samples=n, seed=options.seed, batch_size=options.batch_size)
    completions = generate(model.decoder, model.tokenizer, [i.prompt for i in instances], cfg, model.eos_id)
    programs = [inst.program(c) for inst, cs in zip(instances, completions) for c in cs]
    outcomes = iter(options.sandbox.run_many(programs))
    records = []
    for inst, samples in zip(instances, completions):
        statuses = [next(outcomes).status for _ in samples]
        correct = statuses.count("passed")
        record = {"id": inst.id, "prompt": inst.prompt, "completions": samples, "statuses": statuses,
                  "n": n, "correct": correct}
        record.update({f"pass@{k}": pass_at_k(n, correct, k) for k in options.pass_ks})
        records.append(record)
    return records, {f"pass@{k}": _mean([r[f"pass@{k}"] for r in records]) for k in options.pass_ks}


RUNNERS: dict[str, Callable] = {
    "multiple_choice": run_multiple_choice,
    "generation": run_generation,
    "code": run_code,
}
