"""`codemix report RUN_DIRS... [--out DIR]`: the study's comparison of evaluated arms."""

import argparse
from pathlib import Path

from codemix.paths import reports_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="Table 2, deltas vs text-only, the study's Fig 4/5/6 comparisons, loss curves, win-rates",
        description="Build the study's comparison from trained and evaluated stages. A RUN_DIR is a stage "
                    "directory, a recipe's run directory (runs/<recipe>/) or a whole runs/ root.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, help="output directory (default: $CODEMIX_HOME/reports/report)")
    parser.add_argument("--home", help="codemix home (default: $CODEMIX_HOME or ./.codemix)")
    parser.add_argument("--baseline", metavar="ARM",
                        help="the one arm (recipe run directory name) every delta is taken against "
                             "(default: the arms named '...text-only' and '...text-only-cooldown-text', "
                             "matched per row by model size and cooldown with or without code)")
    parser.add_argument("--winrate", type=Path, action="append", default=[], metavar="FILE_OR_DIR",
                        help="`codemix eval winrate` results to include (a file or a directory of them); repeatable")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from codemix.analysis.report import build_report
    from codemix.analysis.table import BootstrapOptions
    from codemix.errors import ConfigError

    if args.resamples < 1:
        raise ConfigError(f"--resamples {args.resamples}: must be at least 1")
    out = args.out or reports_dir(args.home) / "report"
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:  # before any work: the report is a folder of files
        raise ConfigError(f"{out}: {blocked} is a file, not a folder; give --out a folder for the report")
    report = build_report(args.run_dirs, out, args.baseline, args.winrate,
                          BootstrapOptions(resamples=args.resamples, seed=args.seed))
    print(report.markdown.read_text())
    print(f"report: {report.markdown} ({len(report.files)} files in {report.out})")
    return 0
