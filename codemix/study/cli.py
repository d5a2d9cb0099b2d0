"""`codemix reproduce RECIPE_DIR [--smoke] [--seeds N] [--judge SPEC] [--home DIR] [--limit N] [--out DIR]`: the
study in one command."""

import argparse
import sys

DESCRIPTION = ("Build the recipes' corpus when missing, train every arm of RECIPE_DIR as one graph of stages "
               "(a stage that arms share trains once), evaluate each stage on the study's suite, and write the report.")
EPILOG = """\
  codemix reproduce recipes/tiny            the study in miniature (CPU)
  codemix reproduce recipes/tiny --smoke    its smoke subset (recipes/tiny/smoke/), minutes
  codemix reproduce recipes/tiny --seeds 3  every arm trained with seeds 0, 1, 2: mean and seed spread
  codemix reproduce recipes/tiny --judge http://127.0.0.1:8000/v1 --judge-model M
                                            and the study's win-rates, judged by that endpoint

Interrupt it at any time (Ctrl-C) and run the same command again: completed stages and evaluations
are reused, a half-trained stage resumes from its last checkpoint."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from codemix.study.driver import DEFAULT_CODE_LIMIT, DEFAULT_LIMIT, SMOKE_LIMIT

    parser = subparsers.add_parser(
        "reproduce", help="train, evaluate and report a directory of study arms in one command",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe_dir", metavar="RECIPE_DIR", help="directory of arm recipes, e.g. recipes/tiny")
    parser.add_argument("--smoke", action="store_true", help="run RECIPE_DIR/smoke/ with a tiny evaluation")
    parser.add_argument("--home", help="root for corpora, runs and reports (default: $CODEMIX_HOME or ./.codemix)")
    parser.add_argument("--limit", type=int,
                        help=f"examples per evaluation task (default {DEFAULT_LIMIT}; {SMOKE_LIMIT} with --smoke)")
    parser.add_argument("--code-limit", type=int,
                        help=f"examples per code task (default {DEFAULT_CODE_LIMIT}, at most --limit; "
                             f"{SMOKE_LIMIT} with --smoke)")
    parser.add_argument("--synth-generator", metavar="SPEC",
                        help="for the synthetic-code arms: a generator (codemix:CHECKPOINT_DIR, hf:MODEL_DIR or "
                             "openai:URL#MODEL) solves the shipped problems and the verified solutions join the "
                             "corpus as its synthetic source (`codemix data synth --add-to`); without it those "
                             "arms are skipped when the corpus has no synthetic source")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="train every arm once per seed (initialisation and data order): a stage's seed s "
                             "becomes s, s+1, ..., s+N-1; a stage that arms share stays shared per seed "
                             "(default: each recipe's own seeds, one unless its stages list seeds)")
    parser.add_argument("--judge", metavar="SPEC",
                        help="judge the study's win-rates (each arm's cooldown vs the text-only arm's, and each "
                             "cooldown vs no cooldown) on the shipped open-ended prompts, the first --limit of them: "
                             "an OpenAI-compatible URL (…/v1) or local:CHECKPOINT_DIR, as `codemix eval winrate`")
    parser.add_argument("--judge-model", metavar="M", help="model name sent to the --judge endpoint (default: judge)")
    parser.add_argument("--eval-workers", type=int, metavar="N",
                        help="stages evaluated at once, each in its own process with one torch thread "
                             "(default: one per core)")
    parser.add_argument("--out", help="report directory (default: <home>/reports/<RECIPE_DIR name>[-smoke])")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codemix.study.driver import reproduce
    from codemix.study.judging import JudgeSpec

    options = ("home", "limit", "code_limit", "synth_generator", "seeds", "judge", "judge_model", "eval_workers", "out")
    command = ["codemix", "reproduce", args.recipe_dir] + (["--smoke"] if args.smoke else []) + [
        f"--{name.replace('_', '-')}={value}" for name in options if (value := getattr(args, name)) is not None]
    judge = None if args.judge is None else JudgeSpec.parse(args.judge, args.judge_model)
    try:
        report = reproduce(args.recipe_dir, args.smoke, args.home, args.limit, args.out, command,
                           say=lambda line: print(line, flush=True), code_limit=args.code_limit,
                           synth_generator=args.synth_generator, seeds=args.seeds, judge=judge,
                           eval_workers=args.eval_workers)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C during training into SystemExit
        print("\ncodemix reproduce: interrupted. Completed stages and evaluations are kept; run the same "
              "command again to continue.", file=sys.stderr, flush=True)
        return 130
    if report is not None:
        print("\n" + _table2(report.markdown.read_text()))
        print(f"report: {report.markdown} ({len(report.files)} files in {report.out})", flush=True)
    return 0


def _table2(markdown: str) -> str:
    """The report's Table 2 section (what a person looks at first)."""
    section = markdown.split("## Table 2", 1)[-1].split("\n## ", 1)[0]
    return "Table 2" + section.rstrip()
