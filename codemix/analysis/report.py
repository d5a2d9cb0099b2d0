"""`codemix report`: the study's comparison from evaluated stage directories, as report.md, CSV tables
and PNG figures in one output directory (every file written atomically).

    report.md         first, which of the study's directions the runs show and which they cannot
                      (codemix/analysis/findings.py); Table 2 layout, deltas vs the matched text-only
                      baseline with paired bootstrap 95% intervals, the study's Fig 6 / 4 / 5
                      comparisons, win-rates, figures, and what the scores do not cover
    table2.csv        one row per stage: tokens (per kind, and as the study's text/code columns), scores
                      (over seeds: their mean, and the seed spread in *_sd columns)
    seeds.csv         one row per stage and seed, when a stage was trained once per seed
    deltas.csv        one row per stage and score: absolute and relative delta with their intervals
                      (the *_bpb scores in bits per byte of the gold continuation, the others in %)
    comparisons.csv   the same for the Fig 6 / 4 / 5 comparisons; sweep.csv the sweep's points
    heldout.csv       held-out bits per byte per stage and source (when the evaluation measured it)
    winrates.csv      one row per judged pair (when win-rate files are given)
    dynamics.csv      the scores at every scored checkpoint along each arm (codemix/analysis/dynamics.py)
    figures/          loss_curves.png (validation loss per source along each arm), score_<name>.png,
                      sweep.png (the code-fraction sweep against its 0% model), dynamics.png"""

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from codemix.analysis.bootstrap import Interval
from codemix.analysis.comparison_sections import comparison_sections, comparisons_csv, sweep_csv
from codemix.analysis.comparisons import StudyComparisons, build_comparisons
from codemix.analysis.curves import curves_by_arm
from codemix.analysis.dynamics import dynamics_csv, dynamics_lines, training_dynamics
from codemix.analysis.findings import findings, findings_lines, significance_lines
from codemix.analysis.formatting import (DELTA_COLUMNS, TABLE_BPB, blank, delta_header, delta_records, delta_text,
                                         fmt_tokens, interval_over, is_seeded, mean_and_spread, pct, seed_list,
                                         to_csv)
from codemix.analysis.plots import dynamics_figure, loss_curves_figure, score_figure, sweep_figure
from codemix.analysis.runs import StageRun, find_stages, latest_per_stage
from codemix.analysis.table import BPB_SCORES, SCORE_TITLES, SCORES, BootstrapOptions, Row, build_rows
from codemix.analysis.winrates import WinRate, read_winrates
from codemix.atomic import write_text_atomic

FIGURES = "figures"


@dataclass(frozen=True)
class Report:
    out: Path
    rows: list[Row]
    comparisons: StudyComparisons
    winrates: list[WinRate]
    files: list[Path]

    @property
    def markdown(self) -> Path:
        return self.out / "report.md"


def build_report(run_dirs: list[Path], out: Path, baseline: str | None = None, winrate_paths: list[Path] = (),
                 options: BootstrapOptions = BootstrapOptions()) -> Report:
    stages, superseded = latest_per_stage(find_stages(run_dirs))
    rows = build_rows(stages, baseline, options)
    study = build_comparisons(rows, options)
    winrates = read_winrates(list(winrate_paths), rows, options)
    out.mkdir(parents=True, exist_ok=True)
    curves = curves_by_arm(stages)
    arms = list(dict.fromkeys([row.run.arm for row in rows] + list(curves)))  # the table's order: baseline first
    figures = [loss_curves_figure({arm: curves[arm] for arm in arms}, out / FIGURES / "loss_curves.png")]
    figures += [score_figure(rows, score, out / FIGURES / f"score_{score}.png") for score in SCORES]
    figures.append(sweep_figure(study.sweep, out / FIGURES / "sweep.png"))
    dynamics = training_dynamics(stages)
    figures.append(dynamics_png := dynamics_figure(dynamics, out / FIGURES / "dynamics.png"))
    figures = [f for f in figures if f is not None]
    files = [write_text_atomic(out / "table2.csv", _table_csv(rows)), write_text_atomic(out / "deltas.csv", _deltas_csv(rows))]
    if is_seeded(rows):
        files.append(write_text_atomic(out / "seeds.csv", _seeds_csv(rows)))
    if any(comparisons for _, comparisons in study.compared):
        files.append(write_text_atomic(out / "comparisons.csv", comparisons_csv(study)))
    if study.sweep:
        files.append(write_text_atomic(out / "sweep.csv", sweep_csv(study.sweep)))
    if _heldout_sources(rows):
        files.append(write_text_atomic(out / "heldout.csv", _heldout_csv(rows)))
    if winrates:
        files.append(write_text_atomic(out / "winrates.csv", _winrates_csv(winrates)))
    if dynamics:
        files.append(write_text_atomic(out / "dynamics.csv", dynamics_csv(dynamics)))
    markdown = _markdown(rows, study, winrates, [f.relative_to(out) for f in figures], run_dirs, options, superseded,
                         dynamics_lines(dynamics, dynamics_png and dynamics_png.relative_to(out)))
    files.append(write_text_atomic(out / "report.md", markdown))
    return Report(out, rows, study, winrates, files + figures)


# ---- markdown ----------------------------------------------------------------------------------------
def _markdown(rows: list[Row], study: StudyComparisons, winrates: list[WinRate], figures: list[Path],
              run_dirs: list[Path], options: BootstrapOptions, superseded: list[StageRun], dynamics: list[str]) -> str:
    arms = list(dict.fromkeys(row.run.arm for row in rows))
    baselines = list(dict.fromkeys(row.baseline.run.arm for row in rows if row.baseline is not None))
    seeded = is_seeded(rows)
    lines = [
        "# codemix report", "",
        *findings_lines(findings(study), options.level), "",
        *significance_lines(rows, study, options.level), "",
        f"{len(rows)} stages of {len(arms)} arms from {', '.join(str(p) for p in run_dirs)}; "
        f"written {datetime.now(timezone.utc).isoformat(timespec='seconds')}.", "",
        "Scores are percentages (accuracy, exact match, pass@1) in the layout of the study's Table 2; "
        "token columns count what each stage trained on ('+' = on top of its parent; markup, "
        "code-adjacent and synthetic count as code, high-quality text as text). The bpb columns are "
        "the continuous twins: mean bits per byte of each example's gold continuation (lower is better), "
        "which separate small models whose accuracy sits at chance.", "",
        *(["Stages trained once per seed (column seeds: initialisation and data order) show the mean over "
           "their evaluated seeds ± the seed spread (the sample standard deviation over seeds); seeds.csv has "
           "each seed's scores.", ""] if seeded else []),
        "## Table 2", "",
        "| arm | stage | text | code | reasoning | knowledge | NL avg | code | total avg | "
        + " | ".join(SCORE_TITLES[s] for s in TABLE_BPB) + " | reasoning averages |" + (" seeds |" if seeded else ""),
        "|---|---|---|---|---|---|---|---|---|" + "---|" * (len(TABLE_BPB) + 1 + seeded),
    ]
    for row in rows:
        text, code = row.run.text_and_code_tokens()
        added = row.run.parent_identity is not None
        lines.append(f"| {row.run.arm} | {row.run.stage} | {fmt_tokens(text, added)} | {fmt_tokens(code, added)} | "
                     + " | ".join(mean_and_spread(row, s) for s in DELTA_COLUMNS)
                     + f" | {_reasoning_coverage(row)} |" + (f" {seed_list(row)} |" if seeded else ""))
    lines += ["", "## Change against the text-only baseline", ""]
    named = ", ".join(f"**{arm}**" for arm in baselines)
    if not baselines:
        lines.append("No baseline: no arm is named '...text-only' and none was given with --baseline.")
    elif not any(row.deltas for row in rows):
        lines.append(f"Baseline arms: {named}. No stage has evaluation results on both sides yet.")
    else:
        lines += [
            f"Baseline arms: {named}. Each stage is compared with a baseline stage of the same model size and "
            "kind: a cooldown with code with the baseline's cooldown with code, a cooldown without code with its "
            "cooldown without code, the others with its last stage before the cooldown (column 'vs'). "
            "Relative change in % (in points where the baseline scores 0), "
            f"with a paired bootstrap {options.level:.0%} interval over {interval_over(seeded)} "
            f"({options.resamples} resamples, seed {options.seed}); bpb columns: change in bits per byte "
            "(negative = the gold answer became likelier).", "",
            *delta_header("arm", "stage", "vs"),
        ]
        lines += [f"| {row.run.arm} | {row.run.stage} | {row.baseline.run.label} | "
                  + " | ".join(delta_text(s, row.deltas.get(s)) for s in DELTA_COLUMNS) + " |"
                  for row in rows if row.deltas]
    lines += comparison_sections(study, options)
    lines += dynamics
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
    lines += [f"- {row.run.label} vs {row.baseline.run.label}: {row.baseline_note}" for row in rows if row.baseline_note]
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
            **{f"{s}_pct": pct(row.score(s)) if row.score(s) is not None else "" for s in SCORES},
            **{s: blank(row.score(s)) for s in BPB_SCORES},
            "results": str(run.results_path) if row.scores else "",
            "seeds": seed_list(row), "evaluated_seeds": len(row.seed_scores),
            **{f"{s}_pct_sd": pct(row.spread(s)) if row.spread(s) is not None else "" for s in SCORES},
            **{f"{s}_sd": blank(row.spread(s)) for s in BPB_SCORES},
        })
    return to_csv(records)


def _seeds_csv(rows: list[Row]) -> str:
    """Each seed's stage of each row: its identity and its own scores."""
    records = []
    for row in rows:
        for run, scores in zip(row.seed_runs, row.seed_results):
            records.append({
                "arm": run.arm, "stage": run.stage, "seed": run.seed, "identity": run.identity,
                **{f"{s}_pct": pct(scores.summary.get(s)) if scores and scores.summary.get(s) is not None else ""
                   for s in SCORES},
                **{s: blank(scores.summary.get(s) if scores else None) for s in BPB_SCORES},
                "results": str(run.results_path) if scores else "",
            })
    return to_csv(records)


def _deltas_csv(rows: list[Row]) -> str:
    return to_csv([record for row in rows if row.deltas
                   for record in delta_records(row.run.arm, row.run.stage, row.baseline.run.label, row.deltas)])


def _heldout_csv(rows: list[Row]) -> str:
    return to_csv([{"arm": row.run.arm, "stage": row.run.stage, "source": source, "bits_per_byte": bpb}
                 for row in rows if row.scores for source, bpb in sorted(row.scores.heldout_bpb.items())])


def _winrates_csv(winrates: list[WinRate]) -> str:
    return to_csv([{"a": w.a, "b": w.b, "prompts": w.prompts, "wins_a": w.wins_a, "wins_b": w.wins_b, "ties": w.ties,
                  "win_rate_a_pct": w.win_rate_a.estimate, "win_rate_a_low": w.win_rate_a.low,
                  "win_rate_a_high": w.win_rate_a.high, "win_rate_b_pct": w.win_rate_b.estimate,
                  "file": str(w.path)} for w in winrates])
