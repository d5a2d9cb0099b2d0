"""`codemix eval`: score a checkpoint on the study's benchmarks, or compare two by win-rate.

    codemix eval CHECKPOINT_OR_STAGE_DIR [--suite paper] [--tasks a,b] [--limit N] [--out F] ...
    codemix eval STAGE_DIR --checkpoints all ...   (every snapshot, then final/; scored ones reused)
    codemix eval winrate A B [--prompts FILE] --judge URL|local:CHECKPOINT [--judge-model M] ...
"""

import argparse
import sys
from pathlib import Path

from codemix.paths import reports_dir

WINRATE = "winrate"
CHECKPOINTS = ("final", "all")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a checkpoint or stage dir; `eval winrate A B` compares two",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="CHECKPOINT_OR_STAGE_DIR|winrate")
    parser.add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                        help="options of that form: `codemix eval DIR --help` or `codemix eval winrate --help`")
    parser.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    command = ["codemix", "eval", args.target, *args.rest]
    if args.target == WINRATE:
        return run_winrate(winrate_parser().parse_args(args.rest), command)
    return run_eval(eval_parser().parse_args([args.target, *args.rest]), command)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _csv(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codemix eval", description="Score a checkpoint on benchmark tasks.")
    parser.add_argument("target", help="a pretrained folder (model.safetensors ...) or a stage dir (final/ inside)")
    parser.add_argument("--suite", default="paper", help="paper (the study's tasks), extras, or all")
    parser.add_argument("--tasks", type=_csv, help="comma-separated task names instead of the suite")
    parser.add_argument("--task-file", action="append", default=[], type=Path,
                        help="a user task YAML (repeatable); runs with the suite or when named in --tasks")
    parser.add_argument("--limit", type=int, help="score only the first N examples of each task")
    parser.add_argument("--code-limit", type=int, help="the first N of each code task instead (default: --limit)")
    parser.add_argument("--out", type=Path, help="results JSON (default: <stage dir>/eval/results.json)")
    parser.add_argument("--checkpoints", choices=CHECKPOINTS, default="final",
                        help="all: every snapshot of the stage (snapshots/tokens-N/, results in "
                             "eval/snapshots/tokens-N.json) and final/, reusing results that scored the same "
                             "weights with the same options and tasks")
    parser.add_argument("--num-fewshot", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--code-samples", type=int, default=1, help="completions per code problem (n of pass@k)")
    parser.add_argument("--code-temperature", type=float, default=0.0)
    parser.add_argument("--pass-k", type=_ints, default=(1,), help="comma-separated k values, e.g. 1,10")
    parser.add_argument("--workers", type=int, default=2, help="programs run in parallel in the sandbox")
    parser.add_argument("--timeout", type=float, default=10.0, help="wall seconds per program")
    parser.add_argument("--corpus", help="corpus for per-source held-out loss (default: the stage's own)")
    parser.add_argument("--heldout-samples", type=int, default=64, help="val samples per source (0: skip)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy machine)")
    return parser


def winrate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codemix eval winrate",
                                     description="Pairwise win-rate of A against B, judged in both orders.")
    parser.add_argument("a", help="checkpoint or stage dir A")
    parser.add_argument("b", help="checkpoint or stage dir B")
    parser.add_argument("--prompts", type=Path, default=None, help="jsonl of {\"prompt\": ...} (default: shipped set)")
    parser.add_argument("--judge", required=True,
                        help="OpenAI-compatible base URL (…/v1 or …/v1/chat/completions), or local:CHECKPOINT_DIR")
    parser.add_argument("--judge-model", default="judge", help="model name sent to the endpoint")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, help="first N prompts only")
    parser.add_argument("--out", type=Path, help="results JSON (default: reports/winrate/<A>-vs-<B>.json)")
    parser.add_argument("--device", default="cpu")
    return parser


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_eval(args: argparse.Namespace, command: list[str]) -> int:
    from codemix.errors import ConfigError
    from codemix.eval.harness import evaluate
    from codemix.eval.results import check_results_path, resolve_target, scored_alike, stage_checkpoints
    from codemix.eval.runner import EvalOptions, check_limits
    from codemix.sandbox import Limits, Sandbox
    from codemix.eval.tasks.registry import resolve_tasks
    from codemix.eval.tasks.user import load_user_task

    check_limits(args.limit, args.code_limit)
    every = args.checkpoints == "all"
    if every and args.out is not None:
        raise ConfigError(f"--out {args.out}: --checkpoints all writes one results file per checkpoint "
                          "(eval/snapshots/tokens-N.json and eval/results.json in the stage directory)")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    targets = stage_checkpoints(args.target) if every else [resolve_target(args.target)]
    for target in targets:
        check_results_path(args.out or target.default_results)
    user_tasks = [load_user_task(path) for path in args.task_file]
    tasks = resolve_tasks(args.suite, args.tasks, user_tasks)
    limits = Limits(wall_s=args.timeout, cpu_s=max(1, int(args.timeout)))
    options = EvalOptions(num_fewshot=args.num_fewshot, seed=args.seed, limit=args.limit, code_limit=args.code_limit,
                          batch_size=args.batch_size,
                          code_samples=args.code_samples, code_temperature=args.code_temperature,
                          pass_ks=args.pass_k, sandbox=Sandbox(limits, workers=args.workers))
    failed = False
    for number, target in enumerate(targets, start=1):
        name = target.weights_dir.name  # final, or tokens-N for a snapshot
        if len(targets) > 1:
            _say(f"== checkpoint {number}/{len(targets)}: {name}")
        if every and scored_alike(target, options.recorded(), [task.name for task in tasks]):
            _say(f"{name}: reusing {target.default_results}")
            continue
        results = evaluate(target, tasks, options, command, out=args.out, corpus=args.corpus,
                           heldout_samples=args.heldout_samples, device=args.device, progress=_say)
        for category, value in results["aggregate"].items():
            score = value["score"]
            _say(f"{category:>10}: {'n/a' if score is None else f'{100 * score:.1f}%'}"
                 + (f"  (missing: {', '.join(value['missing'])})" if value.get("missing") else ""))
        if results["failed"]:
            _say(f"failed tasks: {', '.join(results['failed'])}")
            failed = True
    return 1 if failed else 0


def run_winrate(args: argparse.Namespace, command: list[str]) -> int:
    from codemix.eval.generation import GenerationConfig, generate
    from codemix.eval.harness import load_model
    from codemix.eval.judge import PROMPTS, HttpJudge, LocalJudge, load_prompts, win_rate
    from codemix.eval.results import checkpoint_identity, resolve_target, write_results

    prompts = load_prompts(args.prompts or PROMPTS)[: args.limit]
    targets = [resolve_target(path) for path in (args.a, args.b)]
    if args.judge.startswith("local:"):
        judge = LocalJudge(load_model(resolve_target(args.judge[len("local:"):]), args.device))
    else:
        judge = HttpJudge(args.judge, args.judge_model)
    answers = []
    for label, target in zip("AB", targets):
        _say(f"answering {len(prompts)} prompts with {label}: {target.weights_dir}")
        model = load_model(target, args.device)
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens)
        texts = generate(model.decoder, model.tokenizer, [p["prompt"] for p in prompts], cfg, model.eos_id)
        answers.append([t[0].strip() for t in texts])
    _say(f"judging {len(prompts)} prompts x 2 orders with {args.judge}")
    result = win_rate(prompts, answers[0], answers[1], judge)
    result.update(command=command, judge={"endpoint": args.judge, "model": args.judge_model},
                  a=checkpoint_identity(targets[0]), b=checkpoint_identity(targets[1]))
    name = lambda t: (t.stage_dir or t.weights_dir).name  # noqa: E731
    out = args.out or reports_dir() / "winrate" / f"{name(targets[0])}-vs-{name(targets[1])}.json"
    write_results(out, result)
    _say(f"A wins {result['wins_a']}, B wins {result['wins_b']}, ties {result['ties']} of {result['prompts']}; "
         f"results: {out}")
    return 0
