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

BOUND = re.compile(r"^(\w+)<=(\d+(?:\.\d*)?|\.\d+)$")
CATEGORIES = ("reasoning", "knowledge", "code")  # fitted whatever the objective, for the figure and the record
NEEDED_COLUMNS = ("arm", "cumulative_tokens_by_kind")


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
    fit.add_argument("--sweep", metavar="PREFIX",
                     help="the sweep whose arms are named PREFIX + 'sweep-code-N' (e.g. paper-470m-), needed "
                          "when the report holds more than one (one per model size)")
    fit.add_argument("--resamples", type=int, default=500, help="bootstrap refits (default 500)")
    fit.set_defaults(func=run)


def read_table(table: Path) -> list[dict]:
    """table2.csv's rows, refused in one line when it lacks the columns a sweep needs."""
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in NEEDED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{table}: no {', '.join(missing)} column; is it a `codemix report` table2.csv?")
        return list(reader)


def sweeps(rows: list[dict]) -> list[str]:
    """The prefixes of the sweeps in the table (one per model size in a paper study)."""
    return sorted({row["arm"][:match.start()] for row in rows if (match := SWEEP_ARM.search(row["arm"]))})


def sweep_points(rows: list[dict], prefix: str, column: str) -> tuple[list[float], list[float]]:
    """(code fraction, the column's value) of each of the sweep's arms' last evaluated stage, by fraction."""
    last: dict[str, dict] = {}
    for row in rows:
        match = SWEEP_ARM.search(row["arm"])
        if match and row["arm"][:match.start()] == prefix and row.get(column):
            last[row["arm"]] = row
    points = []
    for row in last.values():
        text, code = text_and_code(json.loads(row["cumulative_tokens_by_kind"]))
        points.append((code / (text + code), float(row[column])))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def run(args: argparse.Namespace) -> int:
    from codemix.analysis.mixture_fit import fit_law, recommend
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
    rows = read_table(table)
    known = [column.removesuffix("_bpb") for column in rows[0] if column.endswith("_bpb")] if rows else []
    for option, category in (("--target", args.target), ("--bound", bound and bound[0])):
        if category is not None and category not in known:
            raise ConfigError(f"{option} {category!r}: {table} scores no such category in bits per byte "
                              f"(it has {', '.join(known) or 'none'})")
    prefix = _sweep(rows, args.sweep, table)
    fractions, target = sweep_points(rows, prefix, f"{args.target}_bpb")
    if len(fractions) < 4:
        raise ConfigError(f"{table}: {len(fractions)} sweep arms with {args.target}_bpb; a mixture law needs at least 4")
    series = {}
    for name in dict.fromkeys([args.target, *([bound[0]] if bound else []), *(c for c in CATEGORIES if c in known)]):
        scored, values = sweep_points(rows, prefix, f"{name}_bpb")
        if scored == fractions:
            series[name] = values
        elif bound and name == bound[0]:
            raise ConfigError(f"{table}: {name}_bpb is not scored on the same sweep arms as {args.target}_bpb")
    try:
        pick = recommend(fractions, target, series.get(bound and bound[0]), bound and bound[1], args.resamples)
    except ValueError as error:
        raise ConfigError(f"--bound {args.bound!r} on {table}: {error}") from None
    fits = {name: pick.target if name == args.target else pick.bound if bound and name == bound[0]
            else fit_law(fractions, values) for name, values in series.items()}
    for name, fit in fits.items():
        errors = ", ".join(f"{form} {rmse:.4f}" for form, rmse in fit.loo_rmse.items())
        print(f"{name}: {fit.form} law (leave-one-out RMSE in bpb: {errors})")
    print(f"sweep {prefix}sweep-code-N: {', '.join(f'{100 * f:.0f}%' for f in fractions)} code")
    objective = f"{args.target} bpb" + ("" if bound is None else f" with {bound[0]} bpb <= {bound[1]}")
    left_out = (f"; the interval is over the {pick.refits - pick.infeasible} of {pick.refits} refits that allowed a "
                "fraction" if pick.infeasible else "")
    print(f"recommended code fraction: {100 * pick.fraction:.1f}% [{100 * pick.low:.1f}, {100 * pick.high:.1f}] "
          f"(minimises {objective}{left_out})")
    roles = {args.target: "minimised", **({bound[0]: "bound"} if bound else {})}
    panels = [(f"{name} bpb" + (f" ({roles[name]})" if name in roles else ""), series[name], fits[name],
               bound[1] if bound and name == bound[0] else None) for name in series]
    figure = mixture_fit_figure(fractions, panels, pick, args.report_dir / "mixture_fit.png")
    record = args.report_dir / "mixture_fit.json"
    write_json_atomic(record, {
        "table": str(table), "sweep": f"{prefix}sweep-code-N", "objective": objective,
        "sweep_code_fractions": fractions, "series": series,
        "laws": {name: {"form": fit.form, "loo_rmse": fit.loo_rmse} for name, fit in fits.items()},
        "recommended_code_fraction": pick.fraction, "interval_95": [pick.low, pick.high],
        "refits": pick.refits, "infeasible_refits": pick.infeasible})
    print(f"wrote {figure} and {record}")
    return 0


def _sweep(rows: list[dict], chosen: str | None, table: Path) -> str:
    found = sweeps(rows)
    if chosen is not None:
        if chosen not in found:
            raise ConfigError(f"--sweep {chosen!r}: {table} has no such sweep (it has "
                              f"{', '.join(repr(p) for p in found) or 'none'})")
        return chosen
    if len(found) > 1:
        raise ConfigError(f"{table} holds {len(found)} sweeps ({', '.join(repr(p) for p in found)}); "
                          "choose one with --sweep PREFIX")
    return found[0] if found else ""
