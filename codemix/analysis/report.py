"""`codemix report`: the study's comparison from evaluated stage directories, as report.md, CSV tables
and PNG figures in one output directory (every file written atomically).

    report.md         Table 2 layout, deltas vs the text-only baseline with paired bootstrap 95%
                      intervals, win-rates, figures, and what the scores do not cover
    table2.csv        one row per stage: tokens (per kind, and as the study's text/code columns), scores
    deltas.csv        one row per stage and score: absolute and relative delta with their intervals
                      (the *_bpb scores in bits per byte of the gold continuation, the others in %)
    heldout.csv       held-out bits per byte per stage and source (when the evaluation measured it)
    winrates.csv      one row per judged pair (when win-rate files are given)
    figures/          loss_curves.png (validation loss per source along each arm), score_<name>.png"""

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from codemix.analysis.bootstrap import Interval, fmt_interval
from codemix.analysis.curves import curves_by_arm
from codemix.analysis.plots import loss_curves_figure, score_figure
from codemix.analysis.runs import StageRun, find_stages, latest_per_stage
from codemix.analysis.table import BPB_SCORES, SCORE_TITLES, SCORES, BootstrapOptions, Row, build_rows
from codemix.analysis.winrates import WinRate, read_winrates
from codemix.atomic import write_text_atomic

FIGURES = "figures"


@dataclass(frozen=True)
class Report:
    out: Path
    rows: list[Row]
    winrates: list[WinRate]
    files: list[Path]

    @property
    def markdown(self) -> Path:
        return self.out / "report.md"


def build_report(run_dirs: list[Path], out: Path, baseline: str | None = None, winrate_paths: list[Path] = (),
                 options: BootstrapOptions = BootstrapOptions()) -> Report:
    stages, superseded = latest_per_stage(find_stages(run_dirs))
    rows = build_rows(stages, baseline, options)
    winrates = read_winrates(list(winrate_paths), rows, options)
    out.mkdir(parents=True, exist_ok=True)
    curves = curves_by_arm(stages)
    arms = list(dict.fromkeys([row.run.arm for row in rows] + list(curves)))  # the table's order: baseline first
    figures = [loss_curves_figure({arm: curves[arm] for arm in arms}, out / FIGURES / "loss_curves.png")]
    figures += [score_figure(rows, score, out / FIGURES / f"score_{score}.png") for score in SCORES]
    figures = [f for f in figures if f is not None]
    files = [write_text_atomic(out / "table2.csv", _table_csv(rows)), write_text_atomic(out / "deltas.csv", _deltas_csv(rows))]
    if _heldout_sources(rows):
        files.append(write_text_atomic(out / "heldout.csv", _heldout_csv(rows)))
    if winrates:
        files.append(write_text_atomic(out / "winrates.csv", _winrates_csv(winrates)))
    markdown = _markdown(rows, winrates, [f.relative_to(out) for f in figures], run_dirs, options, superseded)
    files.append(write_text_atomic(out / "report.md", markdown))
    return Report(out, rows, winrates, files + figures)


# ---- formatting -------------------------------------------------------------------------------------
def fmt_tokens(tokens: float, added: bool) -> str:
    """400B, 1.31M, 655K as in the study's table; '+' for tokens a stage adds on top of its parent."""
    if tokens <= 0:
        return "-"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if tokens >= scale:
            value = tokens / scale
            text = f"{value:.0f}{unit}" if abs(value - round(value)) < 0.05 else f"{value:.3g}{unit}"
            break
    else:
        text = f"{tokens:.0f}"
    return f"+{text}" if added else text


TABLE_BPB = ("reasoning_bpb", "knowledge_bpb", "code_bpb", "total_avg_bpb")


def _pct(score: float | None) -> str:
    return "-" if score is None else f"{100 * score:.1f}"


def _bits(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def _cell(row: Row, score: str) -> str:
    return _bits(row.score(score)) if score in BPB_SCORES else _pct(row.score(score))


def _delta_cell(row: Row, score: str) -> str:
    delta = row.deltas.get(score)
    if delta is None:
        return "-"
    if score in BPB_SCORES:  # bits per byte: the change in bits, lower is better
        return fmt_interval(delta.absolute, digits=3)
    if delta.relative.estimate is None:  # the baseline scores 0: only the change in points means something
        return fmt_interval(_scaled(delta.absolute, 100), unit=" pts")
    return fmt_interval(delta.relative, unit="%")


def _scaled(interval: Interval, factor: float) -> Interval:
    return Interval(*(None if v is None else v * factor for v in (interval.estimate, interval.low, interval.high)))


def _markdown(rows: list[Row], winrates: list[WinRate], figures: list[Path], run_dirs: list[Path],
              options: BootstrapOptions, superseded: list[StageRun]) -> str:
    arms = list(dict.fromkeys(row.run.arm for row in rows))
    baseline = next((row.baseline.run.arm for row in rows if row.baseline is not None), None)
    lines = [
        "# codemix report", "",
        f"{len(rows)} stages of {len(arms)} arms from {', '.join(str(p) for p in run_dirs)}; "
        f"written {datetime.now(timezone.utc).isoformat(timespec='seconds')}.", "",
        "Scores are percentages (accuracy, exact match, pass@1) in the layout of the study's Table 2; "
        "token columns count what each stage trained on ('+' = on top of its parent; markup, "
        "code-adjacent and synthetic count as code, high-quality text as text). The bpb columns are "
        "the continuous twins: mean bits per byte of each example's gold continuation (lower is better), "
        "which separate small models whose accuracy sits at chance.", "",
        *_significance(rows, options), "",
        "## Table 2", "",
        "| arm | stage | text | code | reasoning | knowledge | NL avg | code | total avg | "
        + " | ".join(SCORE_TITLES[s] for s in TABLE_BPB) + " | reasoning averages |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * (len(TABLE_BPB) + 1),
    ]
    for row in rows:
        text, code = row.run.text_and_code_tokens()
        added = row.run.parent_identity is not None
        lines.append(f"| {row.run.arm} | {row.run.stage} | {fmt_tokens(text, added)} | {fmt_tokens(code, added)} | "
                     + " | ".join(_cell(row, s) for s in ("reasoning", "knowledge", "nl_avg", "code", "total_avg",
                                                          *TABLE_BPB))
                     + f" | {_reasoning_coverage(row)} |")
    lines += ["", "## Change against the text-only baseline", ""]
    if baseline is None:
        lines.append("No baseline: no arm is named '...text-only' and none was given with --baseline.")
    elif not any(row.deltas for row in rows):
        lines.append(f"Baseline arm: **{baseline}**. No stage has evaluation results on both sides yet.")
    else:
        lines += [
            f"Baseline arm: **{baseline}**. Cooldown stages are compared with its cooldown, the others with "
            "its last stage before the cooldown. Relative change in % (in points where the baseline scores 0), "
            f"with a paired bootstrap {options.level:.0%} interval over examples "
            f"({options.resamples} resamples, seed {options.seed}); bpb columns: change in bits per byte "
            "(negative = the gold answer became likelier).", "",
            "| arm | stage | vs | reasoning | knowledge | NL avg | code | total avg | "
            + " | ".join(SCORE_TITLES[s] for s in TABLE_BPB) + " |",
            "|---|---|---|---|---|---|---|---|" + "---|" * len(TABLE_BPB),
        ]
        for row in rows:
            if row.deltas:
                lines.append(f"| {row.run.arm} | {row.run.stage} | {row.baseline.run.label} | "
                             + " | ".join(_delta_cell(row, s) for s in ("reasoning", "knowledge", "nl_avg", "code",
                                                                          "total_avg", *TABLE_BPB)) + " |")
    sources = _heldout_sources(rows)
    if sources:
        lines += ["", "## Held-out bits per byte", "",
                  "Each source's validation split, scored by `codemix eval` (lower is better).", "",
                  "| arm | stage | " + " | ".join(sources) + " |", "|---|---|" + "---|" * len(sources)]
        lines += [f"| {row.run.arm} | {row.run.stage} | " + " | ".join(_bpb(row, s) for s in sources) + " |"
                  for row in rows if row.scores and row.scores.heldout_bpb]
    if winrates:
        lines += ["", "## Generative win-rates", "",
                  "Both answer orders judged; a prompt is a win only when the orders agree (else a tie). "
                  f"Win rates in % with a bootstrap {options.level:.0%} interval over prompts.", "",
                  "| A | B | prompts | A wins | B wins | ties | A win rate | B win rate |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {w.a} | {w.b} | {w.prompts} | {w.wins_a} | {w.wins_b} | {w.ties} | "
                  f"{_rate(w.win_rate_a)} | {_rate(w.win_rate_b)} |" for w in winrates]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{f.stem}]({f.as_posix()})" for f in figures]
    lines += ["", "## Coverage", ""] + _coverage(rows)
    lines += [f"- left out, superseded by a later stage of the same name in its arm: {run.label} ({run.path})"
              for run in superseded]
    return "\n".join(lines) + "\n"


def _reasoning_coverage(row: Row) -> str:
    """'9 of 11 tasks': how many of the study's reasoning tasks the reasoning column averages."""
    if row.scores is None:
        return "-"
    averaged = len(row.scores.tasks_of("reasoning"))
    return f"{averaged} of {averaged + len(row.scores.missing.get('reasoning', []))} tasks"


def _significance(rows: list[Row], options: BootstrapOptions) -> list[str]:
    """How many deltas' intervals exclude zero, accuracy-style columns against the bpb ones."""
    counts = {}
    for kind, names in (("accuracy", SCORES), ("bits-per-byte", BPB_SCORES)):
        deltas = [row.deltas[name] for row in rows for name in names if name in row.deltas]
        counts[kind] = (sum(1 for d in deltas if d.absolute.low > 0 or d.absolute.high < 0), len(deltas))
    if not any(total for _, total in counts.values()):
        return []
    return [f"Deltas whose {options.level:.0%} interval excludes zero: "
            + ", ".join(f"{hit} of {total} in the {kind} columns" for kind, (hit, total) in counts.items()) + "."]


def _heldout_sources(rows: list[Row]) -> list[str]:
    return sorted({source for row in rows if row.scores for source in row.scores.heldout_bpb})


def _bpb(row: Row, source: str) -> str:
    value = row.scores.heldout_bpb.get(source)
    return "-" if value is None else f"{value:.3f}"


def _rate(interval: Interval) -> str:
    return f"{interval.estimate:.1f} [{interval.low:.1f}, {interval.high:.1f}]"


def _coverage(rows: list[Row]) -> list[str]:
    """What the averages leave out, so a shrunken average is never read as the study's."""
    lines = [f"- {row.run.label} is the same stage as {row.same_as.run.label} (same config, data and seed: "
             "trained and scored once)" for row in rows if row.same_as is not None]
    unevaluated = [row.run.label for row in rows if row.scores is None]
    if unevaluated:
        lines.append(f"- not evaluated (no eval/results.json): {', '.join(unevaluated)}")
    missing: dict[str, set[str]] = {}
    for row in rows:
        for category, tasks in (row.scores.missing if row.scores else {}).items():
            missing.setdefault(category, set()).update(tasks)
    for category, tasks in missing.items():
        if tasks:
            lines.append(f"- {category}: the study's {', '.join(sorted(tasks))} not scored in at least one stage "
                         "(unavailable, failed or not run); the average covers the rest")
    return lines or ["- every stage was evaluated on the study's full suite"]


# ---- CSV ---------------------------------------------------------------------------------------------
def _table_csv(rows: list[Row]) -> str:
    records = []
    for row in rows:
        run: StageRun = row.run
        text, code = run.text_and_code_tokens()
        records.append({
            "arm": run.arm, "stage": run.stage, "identity": run.identity, "parent_identity": run.parent_identity or "",
            "text_tokens": int(text), "code_tokens": int(code),
            "tokens_by_kind": json.dumps(run.tokens_by_kind(), sort_keys=True),
            "cumulative_tokens_by_kind": json.dumps(run.tokens_by_kind(cumulative=True), sort_keys=True),
            **{f"{s}_pct": _pct(row.score(s)) if row.score(s) is not None else "" for s in SCORES},
            **{s: _blank(row.score(s)) for s in BPB_SCORES},
            "results": str(run.results_path) if row.scores else "",
        })
    return _csv(records)


def _deltas_csv(rows: list[Row]) -> str:
    records = []
    for row in rows:
        for score, delta in row.deltas.items():
            scale = 1 if score in BPB_SCORES else 100  # bits per byte stay in bits
            absolute, relative = _scaled(delta.absolute, scale), delta.relative
            records.append({
                "arm": row.run.arm, "stage": row.run.stage, "baseline": row.baseline.run.label,
                "score": SCORE_TITLES[score], "arm_pct": scale * delta.arm, "baseline_pct": scale * delta.base,
                "delta_pts": absolute.estimate, "delta_pts_low": absolute.low, "delta_pts_high": absolute.high,
                "relative_pct": _blank(relative.estimate), "relative_pct_low": _blank(relative.low),
                "relative_pct_high": _blank(relative.high),
            })
    return _csv(records)


def _heldout_csv(rows: list[Row]) -> str:
    return _csv([{"arm": row.run.arm, "stage": row.run.stage, "source": source, "bits_per_byte": bpb}
                 for row in rows if row.scores for source, bpb in sorted(row.scores.heldout_bpb.items())])


def _winrates_csv(winrates: list[WinRate]) -> str:
    return _csv([{"a": w.a, "b": w.b, "prompts": w.prompts, "wins_a": w.wins_a, "wins_b": w.wins_b, "ties": w.ties,
                  "win_rate_a_pct": w.win_rate_a.estimate, "win_rate_a_low": w.win_rate_a.low,
                  "win_rate_a_high": w.win_rate_a.high, "win_rate_b_pct": w.win_rate_b.estimate,
                  "file": str(w.path)} for w in winrates])


def _blank(value: float | None) -> object:
    return "" if value is None else value


def _csv(records: list[dict]) -> str:
    text = io.StringIO()
    if records:
        writer = csv.DictWriter(text, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return text.getvalue()
