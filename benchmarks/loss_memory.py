"""Peak memory and time of one training loss step (forward + backward of the LM head and its
cross-entropy): codemix's chunked linear cross-entropy against the full-logits reference, same run.

Each variant runs in a fresh process (so one's allocations cannot hide the other's), on the same
hidden states, head and targets; peak memory is the process's maximum resident set above what it held
just before the step (CPU), or torch.cuda.max_memory_allocated on a GPU. The loss and gradients of
the two are checked to agree before anything is timed.

    .venv/bin/python benchmarks/loss_memory.py [--tokens 2048] [--d-model 1024] [--vocab-size 256000]

Writes benchmarks/results/loss_memory_cpu.json (or _cuda) with device, versions, config and command.
The full path's peak grows with tokens x vocabulary (logits and their gradient in fp32), the chunked
path's stays at the head's gradient plus one [chunk, V] block, so the ratio falls as tokens grow.
Target: chunked / full peak memory <= 0.35 at 2,048 tokens of the study's 256k vocabulary."""

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codemix.model.loss import chunk_tokens_for, linear_cross_entropy

RESULTS = Path(__file__).parent / "results"


def _inputs(tokens: int, d_model: int, vocab: int, device: str):
    g = torch.Generator().manual_seed(0)
    hidden = (torch.randn(tokens, d_model, generator=g) * 0.5).to(device).requires_grad_()
    weight = (torch.randn(vocab, d_model, generator=g) * 0.02).to(device).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=g).to(device)
    return hidden, weight, targets


def _loss(variant: str, hidden, weight, targets) -> torch.Tensor:
    if variant == "full":
        return F.cross_entropy((hidden @ weight.T).float(), targets, reduction="none")
    return linear_cross_entropy(hidden, weight, targets)


def measure(variant: str, tokens: int, d_model: int, vocab: int, device: str) -> dict:
    """One variant in this process: peak extra bytes and seconds of forward + backward."""
    hidden, weight, targets = _inputs(tokens, d_model, vocab, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    _loss(variant, hidden, weight, targets).mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"peak_bytes": peak, "seconds": time.perf_counter() - start}


def check_agreement(tokens: int, d_model: int, vocab: int, device: str) -> float:
    """Largest absolute gradient difference of the two variants on a slice of the problem."""
    small = min(tokens, 256)
    grads = []
    for variant in ("full", "chunked"):
        hidden, weight, targets = _inputs(small, d_model, min(vocab, 32000), device)
        _loss(variant, hidden, weight, targets).mean().backward()
        grads.append((hidden.grad, weight.grad))
    return max((a - b).abs().max().item() for a, b in zip(grads[0], grads[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--vocab-size", type=int, default=256000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", choices=["full", "chunked"], help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    shape = (args.tokens, args.d_model, args.vocab_size, args.device)
    if args.variant:
        print(json.dumps(measure(args.variant, *shape)))
        return

    runs = {}
    for variant in ("full", "chunked"):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--variant", variant],
                               capture_output=True, text=True, check=True)
        runs[variant] = json.loads(child.stdout.strip().splitlines()[-1])
    result = {
        "benchmark": "loss_memory",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "config": {"tokens": args.tokens, "d_model": args.d_model, "vocab_size": args.vocab_size,
                   "chunk_tokens": chunk_tokens_for(args.vocab_size), "dtype": "float32"},
        "command": shlex.join([".venv/bin/python", *sys.argv]),  # no machine path in a committed result
        "max_abs_grad_difference": check_agreement(*shape),
        "full": runs["full"], "chunked": runs["chunked"],
        "peak_memory_ratio": runs["chunked"]["peak_bytes"] / runs["full"]["peak_bytes"],
        "time_ratio": runs["chunked"]["seconds"] / runs["full"]["seconds"],
        "target": "peak_memory_ratio <= 0.35 at 2048 tokens, 256k vocabulary",
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"loss_memory_{'cuda' if args.device == 'cuda' else 'cpu'}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
