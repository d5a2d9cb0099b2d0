"""The study's figure comparisons (codemix/analysis/comparisons.py) as report.md sections and CSV:

    comparisons.csv   one row per comparison and score (Fig 6 cooldowns, Fig 4 sweep vs 0%, Fig 5
                      quality vs web code), in deltas.csv's columns plus the figure and comparison
    sweep.csv         one row per sweep arm: code share, scores, held-out bpb per source and its
                      change against the 0% model (of its model size: a parameters column when the
                      runs have more than one)

Fig 4's and Fig 5's tables are per model size, each under its size when the runs have more than one."""

from codemix.analysis.baselines import model_size
from codemix.analysis.comparisons import Comparison, StudyComparisons, SweepPoint, by_model_size
from codemix.analysis.formatting import (DELTA_COLUMNS, blank, delta_header, delta_records, delta_text,
                                         interval_over, is_seeded, mean_and_spread, score_text, size_label,
                                         to_csv)
from codemix.analysis.table import BPB_SCORES, SCORE_TITLES, SCORES, BootstrapOptions

SWEEP_SCORES = ("reasoning", "knowledge", "code", "reasoning_bpb", "knowledge_bpb", "code_bpb")


def comparison_sections(study: StudyComparisons, options: BootstrapOptions) -> list[str]:
    """Markdown for Fig 6, Fig 4 and Fig 5, each only when its arms are in the runs."""
    seeded = is_seeded([row for _, comparisons in study.compared for c in comparisons for row in (c.arm, c.reference)])
    note = (f"Relative change in % (in points where the reference scores 0), bpb columns in bits per byte "
            f"(negative = the gold answer became likelier); paired bootstrap {options.level:.0%} intervals "
            f"over {interval_over(seeded)}.")
    lines = []
    if study.cooldown:
        lines += ["", "## Cooldown (the study's Fig 6)", "",
                  "Within each arm: each cooldown against the stage it starts from (no cooldown), and the "
                  "cooldown with code against the cooldown without code from the same stage. " + note, ""]
        lines += _comparison_table(study.cooldown)
    if study.sweep:
        lines += ["", "## Code-fraction sweep (the study's Fig 4)", "",
                  "Each sweep arm's last stage by the share of code among all the tokens it saw (the arm's "
                  "nominal % in brackets). Scores (held-out bpb per source: each source's validation split):"]
        sizes = by_model_size(study.sweep, lambda point: point.row)
        for size, points in sizes:
            lines += _size_heading(size, len(sizes)) + _sweep_tables(points, note)
    if study.quality:
        lines += ["", "## Code quality (the study's Fig 5)", "",
                  "Code-only pretraining on web code plus markup, code-adjacent or synthetic code, against "
                  "web code only. " + note]
        sizes = by_model_size(study.quality, lambda comparison: comparison.arm)
        for size, comparisons in sizes:
            lines += _size_heading(size, len(sizes)) + [""] + _comparison_table(comparisons)
    return lines


def _size_heading(size: int | None, sizes: int) -> list[str]:
    """A model size's subheading, only where the runs have more than one (the quickstart has one)."""
    return ["", f"### {size_label(size)}"] if sizes > 1 else []


def _comparison_table(comparisons: list[Comparison]) -> list[str]:
    lines = delta_header("comparison", "stage", "vs")
    lines += [f"| {c.kind} | {c.arm.run.label} | {c.reference.run.label} | "
              + " | ".join(delta_text(s, c.deltas.get(s)) for s in DELTA_COLUMNS) + " |" for c in comparisons]
    return lines


def _sweep_tables(points: list[SweepPoint], note: str) -> list[str]:
    sources = _sources(points)
    titles = [SCORE_TITLES[s] for s in SWEEP_SCORES]
    lines = ["", "| code % | arm | " + " | ".join(titles + [f"{s} bpb" for s in sources]) + " |",
             "|---|---|" + "---|" * (len(titles) + len(sources))]
    for point in points:
        heldout = point.row.scores.heldout_bpb if point.row.scores else {}
        lines.append(f"| {_share(point)} | {point.row.run.label} | "
                     + " | ".join([mean_and_spread(point.row, s) for s in SWEEP_SCORES]
                                  + [score_text("code_bpb", heldout.get(s)) for s in sources]) + " |")
    compared = [p for p in points if p.vs_zero is not None]
    if compared:
        lines += ["", f"Change against the 0% model ({compared[0].vs_zero.reference.run.label}). {note} "
                  "Held-out columns: change in bits per byte (one value per source, no interval).", "",
                  "| code % | arm | " + " | ".join(titles + [f"{s} bpb" for s in sources]) + " |",
                  "|---|---|" + "---|" * (len(titles) + len(sources))]
        lines += [f"| {_share(p)} | {p.row.run.label} | "
                  + " | ".join([delta_text(s, p.vs_zero.deltas.get(s)) for s in SWEEP_SCORES]
                               + [_change(p.heldout_change.get(s)) for s in sources]) + " |" for p in compared]
    elif not any(p.nominal == 0 for p in points):
        lines += ["", "No 0% model ('...sweep-code-0') among the runs: no changes against it."]
    return lines


def _share(point: SweepPoint) -> str:
    return f"{100 * point.code_share:.0f} ({point.nominal})"


def _change(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _sources(points: list[SweepPoint]) -> list[str]:
    return sorted({s for p in points if p.row.scores for s in p.row.scores.heldout_bpb})


def comparisons_csv(study: StudyComparisons) -> str:
    return to_csv([{"figure": figure, "comparison": c.kind, **record}
                   for figure, comparisons in study.compared for c in comparisons
                   for record in delta_records(c.arm.run.arm, c.arm.run.stage, c.reference.run.label, c.deltas)])


def sweep_csv(points: list[SweepPoint]) -> str:
    sources = _sources(points)
    several_sizes = len(by_model_size(points, lambda point: point.row)) > 1
    records = []
    for p in points:
        heldout = p.row.scores.heldout_bpb if p.row.scores else {}
        deltas = p.vs_zero.deltas if p.vs_zero else {}
        records.append({
            **({"parameters": blank(model_size(p.row.run))} if several_sizes else {}),
            "arm": p.row.run.arm, "stage": p.row.run.stage, "nominal_code_pct": p.nominal,
            "observed_code_pct": 100 * p.code_share,
            **{(f"{s}_pct" if s in SCORES else s): blank(_csv_value(s, p.row.score(s))) for s in (*SCORES, *BPB_SCORES)},
            **{f"delta_{s}": blank(_csv_value(s, deltas[s].absolute.estimate if s in deltas else None))
               for s in (*SCORES, *BPB_SCORES)},
            **{f"heldout_{s}_bpb": blank(heldout.get(s)) for s in sources},
            **{f"heldout_{s}_bpb_change": blank(p.heldout_change.get(s)) for s in sources},
        })
    return to_csv(records)


def _csv_value(score: str, value: float | None) -> float | None:
    """Accuracy-style scores in % (as table2.csv), bpb in bits."""
    if value is None:
        return None
    return value if score in BPB_SCORES else 100 * value
