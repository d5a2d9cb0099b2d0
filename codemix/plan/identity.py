"""A stage's identity: the hash of everything that changes its weights, its parent's identity included.

Two stages with equal identities train the same weights, whatever their recipe or stage is called, so
a stage several arms share trains once. Computing an identity reads recipes and the given tokenizer
hashes; it never opens, let alone builds, a corpus."""

import hashlib
import json
from dataclasses import asdict
from typing import Callable

from codemix.config.recipe import load_recipe
from codemix.config.stages import model_config, parse_parent_ref, stage_of
from codemix.config.recipe_schema import SCRATCH, Recipe, StageConfig
from codemix.config.schedule_steps import decay_steps, warmup_steps
from codemix.hashing import content_sha256


# The tokenizer hash of a recipe's corpus: one string for every recipe in a chain, or a function of the
# recipe (needed when a recipe: parent trains on another corpus).
TokenizerHash = str | Callable[[Recipe], str]
IDENTITY_CHARS = 16


def stage_identity(recipe: Recipe, stage_name: str, tokenizer_hash: TokenizerHash) -> str:
    """16 hex characters of sha256 over identity_payload: equal exactly when two stages would train
    the same weights from the same parent, whatever their recipe or stage is called."""
    payload = json.dumps(identity_payload(recipe, stage_name, tokenizer_hash), sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:IDENTITY_CHARS]


def identity_payload(recipe: Recipe, stage_name: str, tokenizer_hash: TokenizerHash) -> dict:
    """The canonical form of everything that changes a stage's weights: the resolved model, the corpus
    and its tokenizer, numerical precision, the stage's budget, data mixture (normalized), batch,
    optimizer, schedule (warmup in steps, only the fields its kind uses), seed, data passes, and the
    parent's identity. Left out as execution details that leave the mathematics unchanged: names,
    descriptions, devices, nodes, strategy, micro batch, workers, logging, validation and checkpoint
    intervals. The corpus enters as written (a name), or as its absolute path when given as a path;
    model.vocab_size as "corpus" unless the recipe sets it (the tokenizer hash fixes it then)."""
    stage = stage_of(recipe, stage_name)
    vocab = "corpus" if recipe.model.vocab_size is None else recipe.model.vocab_size
    model = {**model_config(recipe).to_dict(), "vocab_size": vocab}
    return {
        "model": model,
        "corpus": recipe.data.corpus,
        "tokenizer_hash": tokenizer_hash if isinstance(tokenizer_hash, str) else tokenizer_hash(recipe),
        "precision": recipe.trainer.precision,
        "tokens": stage.tokens,
        "mixture": _normalized(stage.mixture),
        "seq_len": stage.seq_len,
        "global_batch": stage.global_batch,
        "optimizer": asdict(stage.optimizer),
        "schedule": _schedule_payload(stage),
        "seed": stage.seed,
        "max_passes": stage.max_passes,
        "parent": _parent_payload(recipe, stage, tokenizer_hash),
    }


def _normalized(mixture: dict[str, float]) -> dict[str, float]:
    """Weights summing to 1, zero weights dropped, rounded so 9:1 and 0.9:0.1 hash alike."""
    total = sum(mixture.values())
    return {source: float(f"{weight / total:.12g}")
            for source, weight in sorted(mixture.items()) if weight > 0}


def _schedule_payload(stage: StageConfig) -> dict:
    schedule = stage.schedule
    payload: dict = {"kind": schedule.kind, "warmup_steps": warmup_steps(schedule, stage.steps)}
    if schedule.kind == "cosine":
        payload["min_lr"] = schedule.min_lr
    if schedule.kind in ("linear", "wsd"):
        payload["final_lr"] = schedule.final_lr
    if schedule.kind == "wsd":
        payload["decay_steps"] = decay_steps(schedule, stage.steps)
    return payload


def _parent_payload(recipe: Recipe, stage: StageConfig, tokenizer_hash: TokenizerHash) -> dict | None:
    parent = parse_parent_ref(stage.init_from.ref)
    if parent.kind == SCRATCH:
        return None
    if parent.kind == "stage":
        identity = stage_identity(recipe, parent.stage, tokenizer_hash)
    elif parent.kind == "recipe":
        identity = stage_identity(load_recipe(parent.path), parent.stage, tokenizer_hash)
    else:
        identity = "sha256:" + content_sha256(parent.path)
    return {"identity": identity, "load_optimizer": stage.init_from.load_optimizer}
