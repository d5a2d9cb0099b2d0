"""`codemix data synth`: the synth package's action in the `data` command group (registered by
codemix/cli.py, as the data package knows nothing of synth)."""

import argparse
import shlex
import sys
from pathlib import Path

from codemix.synth.problems import SHIPPED_PROBLEMS


def add_actions(actions: argparse._SubParsersAction) -> None:
    synth = actions.add_parser("synth", help="a generator model writes solutions to problems; "
                                             "verified ones become a synthetic source (jsonl)")
    synth.add_argument("problems", nargs="?", type=Path, default=SHIPPED_PROBLEMS,
                       help="jsonl of problems (id, statement, signature, entry_point, tests, optional reference); "
                            "default: the shipped set")
    synth.add_argument("--generator", required=True, metavar="SPEC",
                       help="codemix:CHECKPOINT_DIR, hf:MODEL_DIR or openai:URL#MODEL")
    synth.add_argument("--out", required=True, type=Path, help="output jsonl (a summary goes to OUT.summary.json)")
    synth.add_argument("--samples", type=int, default=1, help="solutions per problem (default: 1)")
    synth.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    synth.add_argument("--max-new-tokens", type=int, default=512)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=2, help="programs run in parallel in the sandbox")
    synth.add_argument("--timeout", type=float, default=10.0, help="wall seconds per program")
    synth.add_argument("--attempts", type=Path, help="also write every attempt, verified or not, with its status")
    synth.add_argument("--requests", type=int, default=4, help="for openai: requests in flight at once")
    synth.add_argument("--device", default="cpu", help="for codemix: and hf: generators")
    synth.add_argument("--add-to", metavar="CORPUS",
                       help="then add OUT to this corpus (folder or name under <home>/corpora) as a source of kind "
                            "`synthetic`, tokenized with the corpus's tokenizer (`codemix data add`)")
    synth.add_argument("--source-name", default="synthetic_python", help="its name there (default: synthetic_python)")
    synth.add_argument("--home", help="codemix home for --add-to (default: $CODEMIX_HOME, else ./.codemix)")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from codemix.data.corpus import Corpus, resolve_corpus
    from codemix.data.inspect import format_corpus
    from codemix.synth.generators import Sampling
    from codemix.synth.pipeline import SynthOptions, add_synthetic_source, write_synthetic

    options = SynthOptions(problems=args.problems, timeout_s=args.timeout, workers=args.workers,
                           requests=args.requests, device=args.device, attempts=args.attempts,
                           sampling=Sampling(args.samples, args.temperature, args.max_new_tokens, args.seed))
    command = shlex.join(["codemix", "data", "synth", str(args.problems), "--generator", args.generator,
                          "--samples", str(args.samples), "--temperature", str(args.temperature),
                          "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed),
                          "--timeout", str(args.timeout), "--out", str(args.out)]
                         + (["--add-to", args.add_to, "--source-name", args.source_name] if args.add_to else []))
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    target = resolve_corpus(args.add_to, args.home) if args.add_to else None
    if target is not None:
        summary = add_synthetic_source(target, args.generator, args.out, options, args.source_name, command, say)
    else:
        summary = write_synthetic(args.generator, args.out, options, command, say)
    print(f"{summary['verified']} of {summary['attempted']} solutions verified ({100 * summary['rate']:.1f}%), "
          f"{summary['problems_solved']} of {summary['problems']} problems solved; "
          f"{summary['written']} written to {args.out}")
    if target is not None:
        print(format_corpus(Corpus.open(target)))
        print(f"added {args.source_name} to {target}")
    return 0
