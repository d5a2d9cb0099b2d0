"""The report's figures as PNG: validation loss per source along each arm, one bar chart per study
score, the code-fraction sweep's curves against its 0% model, the scores at every scored
checkpoint along each arm, and the mixture law's fit and recommendation. matplotlib's object API (Figure
renders with Agg) keeps pyplot's global state and any display backend out of it."""

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from codemix.analysis.comparisons import SweepPoint, by_model_size
from codemix.analysis.curves import Curve
from codemix.analysis.dynamics import DYNAMICS_SCORES, Checkpoint
from codemix.analysis.formatting import size_label
from codemix.analysis.mixture_fit import GRID, Fit, Recommendation
from codemix.analysis.table import BPB_SCORES, SCORE_TITLES, Row
from codemix.atomic import atomic_file

BILLION, MILLION, THOUSAND = 1e9, 1e6, 1e3
COLORS = {"baseline": "tab:gray", "pretraining": "tab:orange", "cooldown": "tab:blue"}
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = (".", "x", "^", "s")


def arm_style(index: int) -> dict:
    """Line style of the index-th arm: ten colours, then the same colours dashed, dotted, ...; so no
    two of up to forty arms look alike."""
    colour, round_ = index % 10, index // 10
    return {"color": f"C{colour}", "linestyle": LINESTYLES[round_ % len(LINESTYLES)],
            "marker": MARKERS[round_ % len(MARKERS)], "markersize": 4}


def loss_curves_figure(curves: dict[str, dict[str, Curve]], path: Path) -> Path | None:
    """One panel per source, one line per arm; None when no stage logged validation loss."""
    sources = sorted({source for arm in curves.values() for source in arm})
    if not sources:
        return None
    columns = min(3, len(sources))
    rows = math.ceil(len(sources) / columns)
    figure = Figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    scale, unit = _token_unit(max(t for arm in curves.values() for c in arm.values() for t in c.tokens))
    styles = {arm: arm_style(index) for index, arm in enumerate(curves)}
    for ax, source in zip(axes, sources):
        for arm, arm_curves in curves.items():
            curve = arm_curves.get(source)
            if curve is not None:
                ax.plot([t / scale for t in curve.tokens], curve.loss, label=arm, **styles[arm])
        ax.set_title(f"validation loss: {source}")
        ax.set_xlabel(f"tokens along the arm ({unit})")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
    for ax in axes[len(sources):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize="small")
    return _save(figure, path)


def score_figure(rows: list[Row], score: str, path: Path) -> Path | None:
    """Horizontal bars of one study score per evaluated stage (percent), one row per stage in the
    table's order, the baseline's value dashed; the delta against the baseline (relative %, with its
    interval) written beside each bar. Rows, not columns, so twenty arms stay readable. None when
    nothing was scored."""
    scored = [row for row in rows if row.score(score) is not None]
    if not scored:
        return None
    figure = Figure(figsize=(9.0, max(2.5, 0.32 * len(scored) + 1.4)), layout="constrained")
    ax = figure.subplots()
    values = [100 * row.score(score) for row in scored]
    colors = [COLORS["baseline" if row.baseline is row else "cooldown" if row.is_cooldown else "pretraining"]
              for row in scored]
    bars = ax.barh(range(len(scored)), values, color=colors, height=0.7)
    baselines = {id(row.baseline): row.baseline for row in scored if row.baseline is not None}
    for baseline in baselines.values():
        if baseline.score(score) is not None:
            ax.axvline(100 * baseline.score(score), color="tab:gray", linestyle="--", linewidth=1)
    column = 1.03 * max(values) if max(values) > 0 else 1.0  # the deltas line up right of every bar
    for bar, row in zip(bars, scored):
        delta = row.deltas.get(score)
        if delta is not None and delta.relative.estimate is not None:
            relative = delta.relative
            ax.annotate(f"{relative.estimate:+.1f}% [{relative.low:+.1f}, {relative.high:+.1f}]",
                        (column, bar.get_y() + bar.get_height() / 2), ha="left", va="center", fontsize="x-small")
    ax.set_yticks(range(len(scored)), [row.run.label for row in scored], fontsize="small")
    ax.invert_yaxis()  # the table's first row on top
    ax.set_xlabel(f"{SCORE_TITLES[score]} (%)")
    ax.set_title(f"{SCORE_TITLES[score]}, with the change vs the baseline [95% interval]")
    ax.set_xlim(0, column * 1.45)  # room for the deltas
    ax.legend(handles=[Patch(color=color, label=name) for name, color in COLORS.items()], fontsize="small",
              loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes: never over a bar
    ax.grid(axis="x", alpha=0.3)
    return _save(figure, path)


SWEEP_PANELS = [["reasoning", "knowledge", "code"], ["reasoning_bpb", "knowledge_bpb", "code_bpb"],
                ["heldout", "heldout", "heldout"]]


def sweep_figure(points: list[SweepPoint], path: Path) -> Path | None:
    """The study's Fig 4: each category's change against the 0% model (accuracy in points, bpb in
    bits, with 95% intervals) and each source's held-out bpb change, over the share of code; one
    curve per model size, each against its own 0% model. None when no sweep arm was compared with a
    0% model."""
    groups = []
    for size, members in by_model_size(points, lambda p: p.row):
        zero = next((p.vs_zero.reference for p in members if p.vs_zero is not None), None)
        if zero is not None:
            groups.append((size, zero, [p for p in members if p.vs_zero is not None or p.row is zero]))
    if not groups:
        return None
    figure = Figure(figsize=(13.0, 10.0), layout="constrained")
    axes = figure.subplot_mosaic(SWEEP_PANELS)
    several = len(groups) > 1
    for score in [s for row in SWEEP_PANELS[:2] for s in row]:
        ax, scale = axes[score], 1 if score in BPB_SCORES else 100
        for index, (size, zero, compared) in enumerate(groups):
            xs, ys, errors = [], [], [[], []]
            for point in compared:
                delta = None if point.vs_zero is None else point.vs_zero.deltas.get(score)
                if point.row is not zero and delta is None:
                    continue
                low, mid, high = (0.0, 0.0, 0.0) if delta is None else (
                    scale * delta.absolute.low, scale * delta.absolute.estimate, scale * delta.absolute.high)
                xs.append(100 * point.code_share)
                ys.append(mid)
                errors[0].append(mid - low)
                errors[1].append(high - mid)
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, color=f"C{index}",
                        label=size_label(size) if several else None)
        ax.axhline(0, color="tab:gray", linestyle="--", linewidth=1)
        ax.set_title(f"{SCORE_TITLES[score]} vs the 0% model")
        ax.set_ylabel("change (bits per byte)" if score in BPB_SCORES else "change (points)")
        if several:
            ax.legend(fontsize="small")
    heldout = axes["heldout"]
    sources = sorted({s for _, _, compared in groups for p in compared for s in p.heldout_change})
    for group, (size, _, compared) in enumerate(groups):
        for index, source in enumerate(sources):
            marked = [p for p in compared if source in p.heldout_change]
            label = f"{source} ({size_label(size)})" if several else source
            heldout.plot([100 * p.code_share for p in marked], [p.heldout_change[source] for p in marked], label=label,
                         **arm_style(index + group * 10))
    heldout.axhline(0, color="tab:gray", linestyle="--", linewidth=1)
    heldout.set_title("held-out bits per byte per source vs the 0% model")
    heldout.set_ylabel("change (bits per byte)")
    if heldout.get_legend_handles_labels()[0]:
        heldout.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in axes.values():
        ax.set_xlabel("code in all tokens seen (%)")
        ax.grid(alpha=0.3)
    against = groups[0][1].run.label if not several else "each model size's 0% model"
    figure.suptitle(f"code-fraction sweep against {against} [95% intervals]")
    return _save(figure, path)


def mixture_fit_figure(fractions: list[float], panels: list[tuple[str, list[float], Fit, float | None]],
                       pick: Recommendation, path: Path) -> Path:
    """`codemix mixture fit`'s decision: per fitted category (title, sweep values, its law, a bound or
    None) the sweep's points, the chosen law over the sweep's range, the bound's limit, and the
    recommended code fraction with its bootstrap interval."""
    figure = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    grid = GRID[(GRID >= min(fractions)) & (GRID <= max(fractions))]
    for ax, (title, values, fit, limit) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.plot([100 * f for f in fractions], values, "o", color="C0", label="sweep arms")
        ax.plot(100 * grid, fit.law(grid), color="C1", label=f"{fit.form} law (LOO RMSE {fit.loo_rmse[fit.form]:.4f})")
        if limit is not None:
            ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"bound {limit}")
        ax.axvspan(100 * pick.low, 100 * pick.high, color="C2", alpha=0.15, label="95% bootstrap interval")
        ax.axvline(100 * pick.fraction, color="C2", label=f"recommended {100 * pick.fraction:.1f}%")
        ax.set_title(title)
        ax.set_xlabel("code in all tokens seen (%)")
        ax.set_ylabel("bits per byte (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(figure, path)


def dynamics_figure(curves: dict[str, list[Checkpoint]], path: Path) -> Path | None:
    """dynamics_plot as a PNG; None without curves (no snapshot was scored)."""
    figure = dynamics_plot(curves)
    return None if figure is None else _save(figure, path)


def dynamics_plot(curves: dict[str, list[Checkpoint]]) -> Figure | None:
    """Training dynamics: each category's accuracy (top) and gold bpb (bottom) against tokens along the
    arm, one line per arm, a filled marker per snapshot and a hollow one per stage's final weights.
    None without curves. The report saves it; the checkpoint notebook shows it."""
    if not curves:
        return None
    figure = Figure(figsize=(14.0, 7.5), layout="constrained")
    axes = figure.subplots(2, 3).ravel()
    scale, unit = _token_unit(max(point.tokens for points in curves.values() for point in points))
    for ax, score in zip(axes, DYNAMICS_SCORES):
        factor = 1 if score in BPB_SCORES else 100
        if not any(p.score(score) is not None for points in curves.values() for p in points):
            ax.text(0.5, 0.5, "not scored", ha="center", va="center", transform=ax.transAxes, color="tab:gray")
        for index, (label, points) in enumerate(curves.items()):
            scored = [p for p in points if p.score(score) is not None]
            style = arm_style(index)
            ax.plot([p.tokens / scale for p in scored], [factor * p.score(score) for p in scored], label=label,
                    **{**style, "marker": None})
            for hollow in (False, True):
                marked = [p for p in scored if p.is_snapshot != hollow]
                ax.plot([p.tokens / scale for p in marked], [factor * p.score(score) for p in marked],
                        linestyle="none", marker="o", markersize=5, color=style["color"],
                        markerfacecolor="none" if hollow else style["color"])
        ax.set_title(SCORE_TITLES[score])
        ax.set_xlabel(f"tokens along the arm ({unit})")
        ax.set_ylabel("bits per byte (lower is better)" if factor == 1 else "score (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize="small")
    figure.suptitle("training dynamics: filled = snapshot, hollow = a stage's final weights")
    return figure


def _token_unit(largest: float) -> tuple[float, str]:
    for scale, unit in ((BILLION, "B"), (MILLION, "M"), (THOUSAND, "K")):
        if largest >= scale:
            return scale, unit
    return 1.0, "tokens"


def _save(figure: Figure, path: Path) -> Path:
    """Atomically: a reader never sees half a PNG."""
    with atomic_file(path) as out:
        figure.savefig(out, format="png", dpi=110)
    return path
