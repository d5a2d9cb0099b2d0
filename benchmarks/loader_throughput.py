"""Tokens per second the MixtureDataModule train loader delivers (num_workers 0 and 2), against the
tokens per second the tiny model's training step consumes, measured in the same run on the same
machine: the loader keeps up when the ratio is well above 1.

    .venv/bin/python benchmarks/loader_throughput.py [CORPUS] [--micro-batch N] [--max-tokens N]

CORPUS is a corpus name or path (default: the quickstart corpus under CODEMIX_HOME, built first when
missing). The stage is the
corpus's natural mixture (each source weighted by its train tokens), one pass at most.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from bench_corpus import open_bench_corpus, recorded_path  # benchmarks/ is on sys.path when run as a script
from codemix.data.corpus import Corpus
from codemix.data.datamodule import MixtureDataModule
from codemix.data.mixture import plan_data
from codemix.data.remote import StreamCache


def _natural_stage(corpus: Corpus, micro_batch: int, max_tokens: int) -> dict:
    train_tokens = {s.name: int(corpus.manifest(s.name)["splits"]["train"]["tokens"]) for s in corpus.sources}
    batch_tokens = micro_batch * corpus.seq_len
    # The planner rounds each source to whole samples; staying one batch per source under the total
    # keeps every source within one pass.
    fits = sum(train_tokens.values()) // batch_tokens - len(train_tokens)
    batches = min(max_tokens // batch_tokens, fits)
    if batches <= 0:
        raise SystemExit(f"{corpus.path}: too few train tokens for one batch of {micro_batch} x {corpus.seq_len}")
    return {
        "mixture": {name: tokens for name, tokens in train_tokens.items() if tokens},
        "tokens": batches * batch_tokens,
        "seq_len": corpus.seq_len,
        "global_batch": micro_batch,
        "micro_batch": micro_batch,
        "seed": 0,
    }


def _time_loader(corpus_path: Path, stage: dict, num_workers: int, cache: StreamCache = StreamCache()) -> dict:
    corpus = Corpus.open(corpus_path)
    plan = plan_data(corpus, stage["mixture"], stage["tokens"], stage["seq_len"], stage["global_batch"])
    module = MixtureDataModule(plan, stage["micro_batch"], stage["seed"], num_workers=num_workers, cache=cache)
    start = time.perf_counter()
    loader = module.train_dataloader()
    first_batch_s, tokens = None, 0
    for batch in loader:
        tokens += batch["input_ids"].numel()
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
            steady_start, steady_tokens = time.perf_counter(), tokens
    total_s = time.perf_counter() - start
    steady_s = time.perf_counter() - steady_start
    return {
        "num_workers": num_workers,
        "tokens": tokens,
        "seconds": round(total_s, 3),
        "first_batch_seconds": round(first_batch_s, 3),
        "tokens_per_s": round(tokens / total_s),
        "steady_tokens_per_s": round((tokens - steady_tokens) / steady_s) if steady_s > 0 else None,
    }


def measure_tiny_training(vocab_size: int, seq_len: int, micro_batch: int, steps: int = 5) -> dict:
    """Tokens per second one CPU training step of the tiny preset consumes (forward, backward, AdamW)."""
    from codemix.config.presets import preset
    from codemix.model.transformer import Decoder

    model = Decoder(preset("tiny", vocab_size=vocab_size, max_seq_len=seq_len))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, vocab_size, (micro_batch, seq_len))

    def step() -> None:
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab_size), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocations and first-call overheads
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": round(seconds, 3), "tokens_per_s": round(steps * batch.numel() / seconds)}


def measure_loader(
    corpus_path: str | os.PathLike,
    micro_batch: int = 8,
    max_tokens: int = 4_000_000,
    workers: tuple[int, ...] = (0, 2),
    with_training_reference: bool = True,
) -> dict:
    """Loader tokens/s for each num_workers in `workers`, and (by default) the tiny model's training
    consumption as the reference, with loader/consumption ratios."""
    corpus = open_bench_corpus(corpus_path)
    corpus_path = corpus.path
    stage = _natural_stage(corpus, micro_batch, max_tokens)
    report = {
        "corpus": recorded_path(corpus_path),
        "seq_len": corpus.seq_len,
        "micro_batch": micro_batch,
        "stage_tokens": stage["tokens"],
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews both sides
        "loader": [_time_loader(corpus_path, stage, n) for n in workers],
    }
    if with_training_reference:
        reference = measure_tiny_training(corpus.vocab_size, corpus.seq_len, micro_batch)
        report["tiny_training"] = reference
        for row in report["loader"]:
            row["ratio_to_tiny_training"] = round(row["tokens_per_s"] / reference["tokens_per_s"], 1)
    return report


def loader_arguments(description: str) -> argparse.ArgumentParser:
    """The corpus and stage arguments of the loader benchmarks."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("corpus", nargs="?", default="quickstart", help="corpus name or path")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=4_000_000)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = loader_arguments(__doc__.splitlines()[0])
    parser.add_argument("--no-training-reference", action="store_true")
    args = parser.parse_args(argv)
    report = measure_loader(
        args.corpus, args.micro_batch, args.max_tokens, with_training_reference=not args.no_training_reference
    )
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
