"""How the report writes scores, deltas, token counts and CSV: one place, so Table 2, the study's
figure tables and the findings read the same numbers the same way."""

import csv
import io
from typing import Mapping

from codemix.analysis.bootstrap import Delta, Interval, fmt_interval
from codemix.analysis.table import BPB_SCORES, SCORE_TITLES, Row

TABLE_BPB = ("reasoning_bpb", "knowledge_bpb", "code_bpb", "total_avg_bpb")
DELTA_COLUMNS = ("reasoning", "knowledge", "nl_avg", "code", "total_avg", *TABLE_BPB)  # every delta table's


def delta_header(*leading: str) -> list[str]:
    """A delta table's header and rule: the leading columns, then DELTA_COLUMNS."""
    names = [*leading, *(SCORE_TITLES[s] for s in DELTA_COLUMNS)]
    return ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]


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


def pct(score: float | None) -> str:
    return "-" if score is None else f"{100 * score:.1f}"


def bits(score: float | None) -> str:
    return "-" if score is None else f"{score:.3f}"


def score_text(score: str, value: float | None) -> str:
    """A study score in % (accuracy, exact match, pass@1), its bpb twin in bits per byte."""
    return bits(value) if score in BPB_SCORES else pct(value)


def mean_and_spread(row: Row, score: str) -> str:
    """A row's score; over several seeds their mean and seed spread, '31.2 ± 1.4'."""
    text, spread = score_text(score, row.score(score)), row.spread(score)
    return text if spread is None or row.score(score) is None else f"{text} ± {score_text(score, spread)}"


def is_seeded(rows: list[Row]) -> bool:
    """Whether any row was trained once per seed, several seeds."""
    return any(len(row.seed_runs) > 1 for row in rows)


def seed_list(row: Row) -> str:
    """The seeds a row's stage was trained with ('0, 1, 2')."""
    return ", ".join(str(run.seed) for run in row.seed_runs)


def interval_over(seeded: bool) -> str:
    """What a delta's bootstrap resamples."""
    return ("seeds and, inside each seed, the examples both sides were scored on (the k-th seed of each side "
            "paired): run-to-run and example variance together" if seeded else "the examples both sides were scored on")


def delta_text(score: str, delta: Delta | None) -> str:
    """'+8.2% [+3.1, +13.0]' relative for accuracy-style scores (in points where the reference scores
    0); '-0.041 [-0.060, -0.022]' in bits for bpb scores."""
    if delta is None:
        return "-"
    if score in BPB_SCORES:  # bits per byte: the change in bits, lower is better
        return fmt_interval(delta.absolute, digits=3)
    if delta.relative.estimate is None:  # the reference scores 0: only the change in points means something
        return fmt_interval(scaled(delta.absolute, 100), unit=" pts")
    return fmt_interval(delta.relative, unit="%")


def excludes_zero(delta: Delta) -> bool:
    return delta.absolute.low > 0 or delta.absolute.high < 0


def scaled(interval: Interval, factor: float) -> Interval:
    return Interval(*(None if v is None else v * factor for v in (interval.estimate, interval.low, interval.high)))


def delta_records(arm: str, stage: str, reference: str, deltas: Mapping[str, Delta]) -> list[dict]:
    """deltas.csv's columns for one compared pair: each score's values and its absolute (points, or
    bits for bpb) and relative (%) change with their intervals."""
    records = []
    for score, delta in deltas.items():
        scale = 1 if score in BPB_SCORES else 100  # bits per byte stay in bits
        absolute, relative = scaled(delta.absolute, scale), delta.relative
        records.append({
            "arm": arm, "stage": stage, "baseline": reference,
            "score": SCORE_TITLES[score], "arm_pct": scale * delta.arm, "baseline_pct": scale * delta.base,
            "delta_pts": absolute.estimate, "delta_pts_low": absolute.low, "delta_pts_high": absolute.high,
            "relative_pct": blank(relative.estimate), "relative_pct_low": blank(relative.low),
            "relative_pct_high": blank(relative.high),
        })
    return records


def blank(value: float | None) -> object:
    return "" if value is None else value


def to_csv(records: list[dict]) -> str:
    text = io.StringIO()
    if records:
        writer = csv.DictWriter(text, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return text.getvalue()


def size_label(size: int | None) -> str:
    """A model size as the report names it ("470M parameters")."""
    if size is None:
        return "model size not recorded"
    return f"{size / 1e9:.3g}B parameters" if size >= 1e9 else f"{size / 1e6:.3g}M parameters"
