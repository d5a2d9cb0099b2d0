"""The memory estimator (codemix.model.memory) against measured peaks on the CPU: one training step of
the tiny and small presets, with the chunked loss and with full logits, with and without activation
checkpointing, each in a fresh subprocess; and the `small` preset's step at seq 1024 with a 32k and the
study's 256k vocabulary, full logits against the chunked loss (the chunked one must not grow with the
vocabulary the way logits do). Measured: peak RSS (ru_maxrss) above the process's RSS just
before the model is built (imports and torch's own pools excluded). Compared with the estimate less its
fixed 1 GiB CUDA-context overhead and 10% fragmentation allowance, which a CPU does not pay.
JSON into benchmarks/results/memory_estimate_cpu.json: python benchmarks/memory_estimate.py"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "memory_estimate_cpu.json"
VOCAB = 32_768
CASES = [  # (preset, seq, micro_batch)
    ("tiny", 512, 8),
    ("small", 1024, 4),
]
VOCABULARIES = (32_768, 256_000)  # the vocabulary rows: small, seq 1024, micro-batch 1


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_one(preset_name: str, seq: int, micro_batch: int, chunked: bool, checkpointing: int,
                vocab: int = VOCAB) -> dict:
    """Runs in the child: one optimizer step (AdamW allocates its moments at the first), fp32."""
    import torch
    import torch.nn.functional as F

    from codemix.config.presets import preset
    from codemix.model.loss import chunked_linear_cross_entropy
    from codemix.model.memory import TrainingShape, estimate_memory
    from codemix.model.transformer import Decoder

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = preset(preset_name, vocab_size=vocab)
    batch = torch.randint(0, vocab, (micro_batch, seq + 1))
    idle = _rss_bytes()
    model = Decoder(cfg).train()
    model.set_activation_checkpointing(checkpointing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    hidden = model(batch[:, :-1], return_hidden=True).flatten(0, 1)
    targets = batch[:, 1:].flatten()
    if chunked:
        loss = chunked_linear_cross_entropy(hidden, model.output_weight, targets).mean()
    else:
        loss = F.cross_entropy(hidden @ model.output_weight.T, targets)
    loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - idle
    estimate = estimate_memory(cfg, TrainingShape(seq_len=seq, micro_batch=micro_batch, precision="32-true",
                                                  strategy="auto", world_size=1, activation_checkpointing=checkpointing),
                               fused_loss=chunked)
    counted = estimate.parameters + estimate.gradients + estimate.optimizer + estimate.activations + estimate.loss
    return {"preset": preset_name, "vocab": vocab, "seq": seq, "micro_batch": micro_batch,
            "loss": "chunked" if chunked else "full logits", "activation_checkpointing": checkpointing,
            "measured_bytes": peak, "estimated_bytes": counted, "estimate_over_measured": round(counted / peak, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: a JSON list of measure_one's arguments
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*json.loads(args.one))))
        return 0
    rows = [_in_fresh_process([preset_name, seq, micro_batch, chunked, checkpointing])
            for preset_name, seq, micro_batch in CASES for chunked in (True, False) for checkpointing in (0, 1)]
    by_vocab = [_in_fresh_process(["small", 1024, 1, chunked, 0, vocab]) for vocab in VOCABULARIES
                for chunked in (True, False)]
    ratios = [row["estimate_over_measured"] for row in rows + by_vocab]
    peak = {(row["vocab"], row["loss"]): row["measured_bytes"] for row in by_vocab}
    small, large = VOCABULARIES
    result = {"command": "python benchmarks/memory_estimate.py", "interpreter": ".venv/bin/python",
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "load_average": os.getloadavg()},
              "measured": "peak RSS (ru_maxrss) above the RSS just before the model is built, fresh process each",
              "estimated": "parameters + gradients + optimizer + activations + loss (no CUDA context, no "
                           "fragmentation allowance)",
              "rows": rows, "vocabulary_rows": by_vocab,
              "chunked_over_full_at_256k": round(peak[(large, "chunked")] / peak[(large, "full logits")], 3),
              "growth_32k_to_256k": {loss: round(peak[(large, loss)] / peak[(small, loss)], 3)
                                     for loss in ("chunked", "full logits")},
              "within_20_percent": sum(0.8 <= r <= 1.2 for r in ratios), "of": len(ratios)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['within_20_percent']} of {len(ratios)} estimates within 20% of the measured peak; wrote {args.out}")
    return 0


def _in_fresh_process(arguments: list) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(arguments)], capture_output=True, text=True,
                          check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    row = json.loads(done.stdout.splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    sys.exit(main())
