"""`codemix mixture fit REPORT_DIR`: a mixture law over a report's code-fraction sweep arms
(codemix/analysis/mixture_fit.py) and the code fraction it recommends, printed, plotted
(REPORT_DIR/mixture_fit.png) and recorded (REPORT_DIR/mixture_fit.json)."""

import argparse
import csv
import json
import re
from pathlib import Path

from codemix.analysis.comparisons import SWEEP_ARM
from codemix.analysis.kinds import text_and_code
from codemix.atomic import write_json_atomic
from codemix.errors import ConfigError

BOUND = re.compile(r"^(\w+)<=([0-9.]+)$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    mixture = subparsers.add_parser("mixture", help="fit a mixture law over the code-fraction sweep")
    commands = mixture.add_subparsers(dest="mixture_command", required=True)
    fit = commands.add_parser("fit", help="code fraction -> each category's bpb; recommend a code fraction",
                              description="Reads REPORT_DIR/table2.csv (written by `codemix report`); the sweep "
                                          "arms are those named '...sweep-code-N', their code fraction is the "
                                          "code share of every token their last stage saw.")
    fit.add_argument("report_dir", type=Path, metavar="REPORT_DIR")
    fit.add_argument("--target", default="reasoning", help="category whose bpb to minimise (default reasoning)")
    fit.add_argument("--bound", metavar="CATEGORY<=BPB", help="keep another category's bpb at most this, e.g. knowledge<=1.9")
    fit.add_argument("--resamples", type=int, default=500, help="bootstrap refits (default 500)")
    fit.set_defaults(func=run)


def sweep_points(table: Path, column: str) -> tuple[list[float], list[float]]:
    """(code fraction, the column's value) of each sweep arm's last evaluated stage, by fraction."""
    last: dict[str, dict] = {}
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if SWEEP_ARM.search(row["arm"]) and row.get(column):
                last[row["arm"]] = row
    points = []
    for row in last.values():
        text, code = text_and_code(json.loads(row["cumulative_tokens_by_kind"]))
        points.append((code / (text + code), float(row[column])))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def categories(table: Path) -> list[str]:
    """The categories the table scores in bits per byte (its `<category>_bpb` columns)."""
    with table.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    return [column.removesuffix("_bpb") for column in header if column.endswith("_bpb")]


def run(args: argparse.Namespace) -> int:
    from codemix.analysis.mixture_fit import recommend
    from codemix.analysis.plots import mixture_fit_figure

    table = args.report_dir / "table2.csv"
    if not table.is_file():
        raise ConfigError(f"{table}: no such file; run `codemix report` first and give its output folder")
    if args.resamples < 1:
        raise ConfigError(f"--resamples {args.resamples}: must be at least 1")
    bound = None
    if args.bound is not None:
        match = BOUND.match(args.bound)
        if match is None:
            raise ConfigError(f"--bound {args.bound!r}: expected CATEGORY<=BPB, e.g. knowledge<=1.9")
        bound = (match.group(1), float(match.group(2)))
    known = categories(table)
    for option, category in (("--target", args.target), ("--bound", bound and bound[0])):
        if category is not None and category not in known:
            raise ConfigError(f"{option} {category!r}: {table} scores no such category in bits per byte "
                              f"(it has {', '.join(known) or 'none'})")
    fractions, target = sweep_points(table, f"{args.target}_bpb")
    if len(fractions) < 4:
        raise ConfigError(f"{table}: {len(fractions)} sweep arms with {args.target}_bpb; a mixture law needs at least 4")
    bound_y = None
    if bound is not None:
        bound_fractions, bound_y = sweep_points(table, f"{bound[0]}_bpb")
        if bound_fractions != fractions:
            raise ConfigError(f"{table}: {bound[0]}_bpb is not scored on the same sweep arms as {args.target}_bpb")
    try:
        pick = recommend(fractions, target, bound_y, None if bound is None else bound[1], args.resamples)
    except ValueError as error:
        raise ConfigError(f"--bound {args.bound!r} on {table}: {error}") from None
    for name, fit in (("target", pick.target), ("bound", pick.bound)):
        if fit is not None:
            errors = ", ".join(f"{form} {rmse:.4f}" for form, rmse in fit.loo_rmse.items())
            print(f"{name}: {fit.form} law (leave-one-out RMSE in bpb: {errors})")
    print(f"sweep: {', '.join(f'{100 * f:.0f}%' for f in fractions)} code")
    objective = f"{args.target} bpb" + ("" if bound is None else f" with {bound[0]} bpb <= {bound[1]}")
    left_out = f"; {pick.infeasible} of {pick.refits} refits allowed no fraction" if pick.infeasible else ""
    print(f"recommended code fraction: {100 * pick.fraction:.1f}% [{100 * pick.low:.1f}, {100 * pick.high:.1f}] "
          f"(minimises {objective}{left_out})")
    panels = [(f"{args.target} bpb (minimised)", target, pick.target, None)]
    if bound is not None:
        panels.append((f"{bound[0]} bpb (bound)", bound_y, pick.bound, bound[1]))
    figure = mixture_fit_figure(fractions, panels, pick, args.report_dir / "mixture_fit.png")
    record = args.report_dir / "mixture_fit.json"
    write_json_atomic(record, {
        "table": str(table), "objective": objective, "sweep_code_fractions": fractions,
        "series": {title: values for title, values, _, _ in panels},
        "laws": {title: {"form": fit.form, "loo_rmse": fit.loo_rmse} for title, _, fit, _ in panels},
        "recommended_code_fraction": pick.fraction, "interval_95": [pick.low, pick.high],
        "refits": pick.refits, "infeasible_refits": pick.infeasible})
    print(f"wrote {figure} and {record}")
    return 0
