"""One evaluation: load a checkpoint, run each task (a task that fails is reported, the others
still run), aggregate as in the study, add held-out loss when a corpus is known, write results."""

import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from codemix.data.corpus import Corpus
from codemix.data.tokenizer import EOS, file_hash
from codemix.eval.aggregate import aggregate
from codemix.eval.heldout import heldout_loss
from codemix.eval.results import Target, checkpoint_identity, lineage, write_results
from codemix.eval.runner import EvalOptions, Model, NonFiniteScores, run_task
from codemix.eval.tasks.base import TaskSpec
from codemix.eval.tasks.registry import UNAVAILABLE
from codemix.model.checkpoint import TOKENIZER, WEIGHTS, load_pretrained

Progress = Callable[[str], None]


def load_model(target: Target, device: str = "cpu") -> Model:
    decoder, _, tokenizer = load_pretrained(target.weights_dir, device=device)
    eos_id = tokenizer.token_to_id(EOS)
    return Model(decoder, tokenizer, eos_id if eos_id is not None else 0, str(target.weights_dir / WEIGHTS))


def corpus_for(target: Target, corpus: str | Path | None) -> Corpus | None:
    """The corpus named on the command line, else the one the stage was trained on (if still there)."""
    if corpus is not None:
        return Corpus.open(corpus)
    found = lineage(target)
    trained_on = found.corpus.path if found is not None and found.corpus.path else None
    if trained_on and (Path(trained_on) / "corpus.json").is_file():
        return Corpus.open(trained_on)
    return None


def _guarded(results: dict, name: str, progress: Progress, step: Callable):
    """Run one step; a failure is recorded under results["failed"][name] and the evaluation goes on."""
    try:
        return step()
    except NonFiniteScores:  # broken weights, not a broken task: stop the evaluation
        raise
    except Exception as err:  # noqa: BLE001 - one broken task must not sink the others
        results["failed"][name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        progress(f"{name} FAILED: {type(err).__name__}: {err}")
        return None


def evaluate(target: Target, tasks: list[TaskSpec], options: EvalOptions, command: list[str],
             out: Path | None = None, corpus: str | Path | None = None, heldout_samples: int = 64,
             device: str = "cpu", progress: Progress = print) -> dict:
    started = time.monotonic()
    model = load_model(target, device)
    results: dict = {
        "schema": 1,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "checkpoint": checkpoint_identity(target),
        "options": options.recorded(),
        "sandbox": options.sandbox.describe(),
        "tasks": {}, "failed": {},
        "unavailable": {name: reason for name, (_, reason) in UNAVAILABLE.items()},
    }
    for number, spec in enumerate(tasks, start=1):
        progress(f"[{number}/{len(tasks)}] {spec.name} ({spec.kind}) ...")
        task_started = time.monotonic()
        result = _guarded(results, spec.name, progress, lambda: run_task(spec, model, options))
        if result is None:
            continue
        result["wall_s"] = round(time.monotonic() - task_started, 2)
        results["tasks"][spec.name] = result
        progress(f"[{number}/{len(tasks)}] {spec.name}: {result['primary_metric']} = {result['score']:.4f} "
                 f"on {result['counts']['scored']} examples ({result['wall_s']} s)")
    results["aggregate"] = aggregate({name: (r["category"], r["score"]) for name, r in results["tasks"].items()})
    # the same averages over the continuous score (bits per byte of the gold continuation, lower is better)
    results["aggregate_bpb"] = aggregate({name: (r["category"], r["metrics"]["bpb"])
                                          for name, r in results["tasks"].items() if "bpb" in r["metrics"]})
    if heldout_samples > 0:
        data = _guarded(results, "heldout", progress, lambda: corpus_for(target, corpus))
        if data is not None:
            progress(f"held-out loss on {data.path} ...")
            tokenizer_hash = file_hash(target.weights_dir / TOKENIZER)
            sources = _guarded(results, "heldout", progress,
                               lambda: heldout_loss(model, data, tokenizer_hash, heldout_samples))
            if sources is not None:
                results["heldout"] = {"corpus": str(data.path), "sources": sources}
    results["wall_s"] = round(time.monotonic() - started, 2)
    path = write_results(out or target.default_results, results)
    progress(f"results: {path}")
    return results
