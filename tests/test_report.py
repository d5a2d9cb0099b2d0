"""`codemix report`: paired bootstrap with known answers, and the whole report over stage directories
laid out as `codemix train` and `codemix eval` write them (lineage.json, metrics.csv,
eval/results.json, shared stages linked into a second arm), with results JSONs written here."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from codemix.analysis.bootstrap import mean_interval, paired_delta
from codemix.analysis.curves import arm_curves
from codemix.analysis.runs import find_stages
from codemix.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


# ---- bootstrap ------------------------------------------------------------------------------------
def test_identical_models_differ_by_exactly_nothing():
    scores = np.random.default_rng(1).integers(0, 2, 300).astype(float)
    delta = paired_delta([[(scores, scores)]], resamples=500)
    assert (delta.absolute.estimate, delta.absolute.low, delta.absolute.high) == (0, 0, 0)
    assert (delta.relative.estimate, delta.relative.low, delta.relative.high) == (0, 0, 0)


def test_pairing_cancels_example_difficulty():
    """A model better by exactly 0.1 on every example: paired resampling gives a zero-width interval,
    however much the examples' difficulty varies."""
    base = np.random.default_rng(2).uniform(0, 0.9, 250)
    delta = paired_delta([[(base + 0.1, base)]], resamples=500)
    assert delta.absolute.low == pytest.approx(0.1) and delta.absolute.high == pytest.approx(0.1)


def test_interval_matches_the_binomial_answer():
    """Arm right on all 400 examples, baseline on half: relative change +100%; the baseline's resampled
    accuracy is Binomial(400, 0.5)/400 (sd 0.025), so the 95% interval is about [1/0.549 - 1, 1/0.451 - 1]."""
    arm, base = np.ones(400), np.repeat([1.0, 0.0], 200)
    delta = paired_delta([[(arm, base)]], resamples=4000, seed=3)
    assert delta.relative.estimate == pytest.approx(100.0)
    assert delta.absolute.low == pytest.approx(0.5 - 0.049, abs=0.01)
    assert delta.absolute.high == pytest.approx(0.5 + 0.049, abs=0.01)
    assert delta.relative.low == pytest.approx(100 * (1 / 0.549 - 1), abs=4)
    assert delta.relative.high == pytest.approx(100 * (1 / 0.451 - 1), abs=4)


def test_scores_are_means_of_task_means_and_of_group_means():
    small, large = (np.array([1.0, 0.0]), np.zeros(2)), (np.ones(100), np.zeros(100))
    other = (np.full(10, 0.5), np.full(10, 0.25))
    delta = paired_delta([[small, large], [other]], resamples=50)
    assert delta.arm == pytest.approx(((0.5 + 1.0) / 2 + 0.5) / 2)  # not the pooled mean of 112 examples
    assert delta.base == pytest.approx((0.0 + 0.25) / 2)


def test_relative_change_against_a_zero_baseline_is_undefined():
    delta = paired_delta([[(np.array([1.0, 0.0, 0.0]), np.zeros(3))]], resamples=50)
    assert delta.relative.estimate is None and delta.absolute.estimate == pytest.approx(1 / 3)


def test_mean_interval_of_a_constant_is_the_constant():
    interval = mean_interval(np.full(20, 0.25), resamples=100)
    assert (interval.estimate, interval.low, interval.high) == (0.25, 0.25, 0.25)


# ---- stage directories as training and evaluation write them ---------------------------------------
SOURCES = {"kjv": "text", "code_python": "code", "python_docs": "markup"}
SEQ_LEN, GLOBAL_BATCH = 512, 16
STEP_TOKENS = SEQ_LEN * GLOBAL_BATCH
UNAVAILABLE = {"storycloze": "no package ships it", "quac": "no package ships it"}


def results_json(tasks: dict[str, tuple[str, str, int, int]], offset: int = 0, bpb_shift: float = 0.0) -> dict:
    """`codemix eval`'s results: task -> (category, primary metric, examples, how many score 1); the
    right ones are examples offset, offset + 1, ... (wrapping), so two models can be right on
    different examples."""
    out = {"schema": 1, "tasks": {}, "failed": {}, "unavailable": UNAVAILABLE}
    for name, (category, metric, n, right) in tasks.items():
        # a right answer's gold continuation costs 0.5 bits per byte, a wrong one's 1.5 (plus bpb_shift)
        correct = [float((i - offset) % n < right) for i in range(n)]
        records = [{"id": f"{name}-{i}", "prompt": "...", metric: ok, "bpb": 1.5 - ok + bpb_shift}
                   for i, ok in enumerate(correct)]
        out["tasks"][name] = {"task": name, "category": category, "primary_metric": metric, "score": right / n,
                              "metrics": {metric: right / n, "bpb": 1.5 - right / n + bpb_shift},
                              "counts": {"available": n, "scored": n},
                              "records": records}
    means = {}
    for category in ("reasoning", "knowledge", "code"):
        scores = [t["score"] for t in out["tasks"].values() if t["category"] == category]
        means[category] = sum(scores) / len(scores)
    out["aggregate"] = {c: {"score": means[c], "tasks": [], "missing": ["quac", "storycloze"] if c == "reasoning" else []}
                        for c in means}
    out["aggregate"]["nl_avg"] = {"score": (means["reasoning"] + means["knowledge"]) / 2}
    out["aggregate"]["total_avg"] = {"score": sum(means.values()) / 3}
    out["aggregate_bpb"] = {c: {"score": 1.5 - v + bpb_shift} for c, v in means.items()}
    out["aggregate_bpb"]["total_avg"] = {"score": 1.5 - sum(means.values()) / 3 + bpb_shift}
    return out


def scores(piqa: int, hellaswag: int, triviaqa: int, humaneval: int) -> dict:
    results = results_json({"piqa": ("reasoning", "acc", 200, piqa), "hellaswag": ("reasoning", "acc_norm", 200, hellaswag),
                         "triviaqa": ("knowledge", "exact_match", 100, triviaqa),
                         "humaneval": ("code", "pass@1", 20, humaneval)})
    results["heldout"] = {"corpus": "quickstart", "sources": {
        "kjv": {"kind": "text", "loss": 3.0, "bits_per_byte": 1 + piqa / 1000},
        "code_python": {"kind": "code", "loss": 3.0, "bits_per_byte": 2 - humaneval / 100}}}
    return results


def make_stage(runs: Path, arm: str, stage: str, identity: str, tokens: dict[str, int], parent=None,
               results: dict | None = None, val_loss: float = 4.0,
               finished_at: str = "2026-11-24T19:00:00+00:00", parameters: int | None = None,
               seed: int | None = None) -> Path:
    path = runs / arm / f"{stage}-{identity}"
    path.mkdir(parents=True)
    cumulative = dict(tokens)
    if parent is not None:
        for source, n in json.loads((parent / "lineage.json").read_text())["cumulative_tokens_per_source"].items():
            cumulative[source] = cumulative.get(source, 0) + n
    parent_identity = None if parent is None else parent.name.rpartition("-")[2]
    lineage = {"recipe": {"name": arm}, "stage": stage, "identity": identity,
               "parent": None if parent is None else {"ref": "stage:x", "identity": parent_identity, "path": str(parent)},
               "stage_config": {"seq_len": SEQ_LEN, "global_batch": GLOBAL_BATCH},
               "tokens": sum(tokens.values()), "tokens_per_source": tokens, "cumulative_tokens_per_source": cumulative,
               "mixture": [{"source": s, "kind": k, "target_share": 0.0, "planned_tokens": tokens.get(s, 0),
                            "observed_tokens": tokens.get(s, 0), "observed_share": 0.0} for s, k in SOURCES.items()],
               "finished_at": finished_at, "completed": True}
    if parameters is not None:
        lineage["parameters"] = parameters
    if seed is not None:
        lineage["stage_config"]["seed"] = seed
    (path / "lineage.json").write_text(json.dumps(lineage))
    steps = sum(tokens.values()) // STEP_TOKENS
    with open(path / "metrics.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, ["step", "train/loss", "val/loss/kjv", "val/loss/code_python"])
        writer.writeheader()
        for step in range(steps):  # Lightning's rows: the 0-based index of the step they follow
            writer.writerow({"step": step, "train/loss": val_loss})
            if (step + 1) % 4 == 0 or step + 1 == steps:
                writer.writerow({"step": step, "val/loss/kjv": val_loss - (step + 1) / 100,
                                 "val/loss/code_python": val_loss})
    if results is not None:
        (path / "eval").mkdir()
        (path / "eval" / "results.json").write_text(json.dumps(results))
    return path


def link(runs: Path, arm: str, stage: Path, name: str | None = None) -> None:
    """As training does for a stage another recipe already trained (`name`: the stage's name there)."""
    (runs / arm).mkdir(parents=True, exist_ok=True)
    name = stage.name if name is None else f"{name}-{stage.name.rpartition('-')[2]}"
    (runs / arm / name).symlink_to(os.path.relpath(stage, runs / arm))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    pt = make_stage(runs, "tiny-text-only", "pt", "a1", {"kjv": 160 * STEP_TOKENS}, results=scores(120, 100, 10, 0))
    make_stage(runs, "tiny-text-only", "cooldown", "a2", {"kjv": 13 * STEP_TOKENS, "code_python": 3 * STEP_TOKENS},
               parent=pt, results=scores(124, 104, 12, 1))
    init = make_stage(runs, "tiny-balanced-to-text", "init", "b1",
                      {"kjv": 40 * STEP_TOKENS, "code_python": 32 * STEP_TOKENS, "python_docs": 8 * STEP_TOKENS})
    cpt = make_stage(runs, "tiny-balanced-to-text", "cpt", "b2", {"kjv": 72 * STEP_TOKENS, "code_python": 8 * STEP_TOKENS},
                     parent=init, results=scores(130, 110, 12, 2), val_loss=3.5)
    make_stage(runs, "tiny-balanced-to-text", "cooldown", "b3", {"kjv": 13 * STEP_TOKENS, "code_python": 3 * STEP_TOKENS},
               parent=cpt, results=scores(132, 112, 13, 3))
    for shared in (init, cpt):
        link(runs, "tiny-balanced-to-text-cooldown-text", shared)
    make_stage(runs, "tiny-balanced-to-text-cooldown-text", "cooldown", "c3", {"kjv": 16 * STEP_TOKENS}, parent=cpt,
               results=scores(128, 108, 14, 1))
    link(runs, "tiny-sweep-code-50", cpt, name="pt")  # an arm whose one stage another arm trained
    # The training cache's index and an unfinished stage are not part of any arm.
    (runs / "_stages").mkdir()
    (runs / "_stages" / "b1").symlink_to(os.path.relpath(init, runs / "_stages"))
    (runs / "tiny-text-only" / "pt-zz").mkdir()
    (runs / "tiny-text-only" / "pt-zz" / "lineage.json").write_text(json.dumps({"identity": "zz", "completed": False}))
    return runs


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as src:
        return list(csv.DictReader(src))


def test_report_builds_table_2_deltas_curves_and_winrates(runs, tmp_path, capsys):
    winrate = tmp_path / "winrate.json"
    outcomes = ["a"] * 11 + ["b"] * 6 + ["tie"] * 3
    winrate.write_text(json.dumps({
        "prompts": 20, "wins_a": 11, "wins_b": 6, "ties": 3,
        "a": {"kind": "stage", "identity": "b3", "stage": "cooldown", "recipe": "tiny-balanced-to-text"},
        "b": {"kind": "stage", "identity": "c3", "stage": "cooldown", "recipe": "x"},
        "records": [{"id": f"open-{i}", "outcome": o} for i, o in enumerate(outcomes)]}))
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--resamples", "300", "--winrate", str(winrate)]) == 0

    table = read_csv(out / "table2.csv")
    assert [(r["arm"], r["stage"]) for r in table] == [
        ("tiny-text-only", "pt"), ("tiny-text-only", "cooldown"),
        ("tiny-balanced-to-text", "init"), ("tiny-balanced-to-text", "cpt"), ("tiny-balanced-to-text", "cooldown"),
        ("tiny-balanced-to-text-cooldown-text", "cooldown"),  # shared init and cpt shown once,
        ("tiny-sweep-code-50", "pt")]  # but an arm's last stage always, even when another arm trained it
    init = table[2]
    assert (int(init["text_tokens"]), int(init["code_tokens"])) == (40 * STEP_TOKENS, 40 * STEP_TOKENS)  # markup is code
    assert json.loads(init["cumulative_tokens_by_kind"]) == {"text": 40 * STEP_TOKENS, "code": 32 * STEP_TOKENS,
                                                             "markup": 8 * STEP_TOKENS}
    assert table[3]["reasoning_pct"] == "60.0" and table[3]["total_avg_pct"] == f"{100 * (0.6 + 0.12 + 0.1) / 3:.1f}"
    assert init["reasoning_pct"] == ""  # not evaluated

    deltas = {(r["arm"], r["stage"], r["score"]): r for r in read_csv(out / "deltas.csv")}
    cpt = deltas[("tiny-balanced-to-text", "cpt", "reasoning")]
    assert cpt["baseline"] == "tiny-text-only/pt"
    assert float(cpt["relative_pct"]) == pytest.approx(100 * (0.6 / 0.55 - 1))
    assert float(cpt["relative_pct_low"]) < float(cpt["relative_pct"]) < float(cpt["relative_pct_high"])
    assert deltas[("tiny-balanced-to-text", "cooldown", "reasoning")]["baseline"] == "tiny-text-only/cooldown"
    code = deltas[("tiny-balanced-to-text", "cpt", "code")]  # the baseline's pass@1 is 0: points, no ratio
    assert code["relative_pct"] == "" and float(code["delta_pts"]) == pytest.approx(10.0)
    assert not any(arm == "tiny-text-only" for arm, _, _ in deltas)
    bpb = deltas[("tiny-balanced-to-text", "cpt", "reasoning bpb")]  # in bits: 1.5 - 0.6 against 1.5 - 0.55
    assert float(bpb["delta_pts"]) == pytest.approx(-0.05) and float(bpb["delta_pts_high"]) < 0
    assert float(table[3]["reasoning_bpb"]) == pytest.approx(0.9)

    markdown = (out / "report.md").read_text()
    assert "| tiny-balanced-to-text | cpt | +590K | +65.5K | 60.0 | 12.0 | 36.0 | 10.0 | 27.3 |" in markdown
    assert "| tiny-text-only | pt | 1.31M | - | 55.0 | 10.0 | 32.5 | 0.0 | 21.7 | 0.950 | 1.400 | 1.500 | 1.283 |" \
        in markdown
    assert "| reasoning bpb | knowledge bpb | code bpb | total avg bpb | reasoning averages |" in markdown
    assert "| 1.500 | 1.283 | 2 of 4 tasks |" in markdown  # piqa, hellaswag; quac and storycloze missing
    assert "interval excludes zero:" in markdown and "in the bits-per-byte columns" in markdown
    assert "not evaluated (no eval/results.json): tiny-balanced-to-text/init" in markdown
    assert "tiny-sweep-code-50/pt is the same stage as tiny-balanced-to-text/cpt" in markdown
    # no text-only cooldown without code here: the one with code stands in, and Coverage says so
    assert deltas[("tiny-balanced-to-text-cooldown-text", "cooldown", "reasoning")]["baseline"] == "tiny-text-only/cooldown"
    assert ("tiny-balanced-to-text-cooldown-text/cooldown vs tiny-text-only/cooldown: the baseline arms have no "
            "cooldown without code of this model size") in markdown
    assert "quac, storycloze" in markdown
    assert "| tiny-balanced-to-text | cpt | 1.980 | 1.130 |" in markdown  # held-out bits per byte
    assert {(r["arm"], r["stage"], r["source"]) for r in read_csv(out / "heldout.csv")} >= {
        ("tiny-text-only", "pt", "kjv"), ("tiny-text-only", "pt", "code_python")}
    assert "| tiny-balanced-to-text/cooldown | tiny-balanced-to-text-cooldown-text/cooldown | 20 | 11 | 6 | 3 | 55.0 [" \
        in markdown
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["loss_curves.png"] + sorted(f"score_{s}.png" for s in
                                                   ("reasoning", "knowledge", "code", "nl_avg", "total_avg"))
    assert all((out / "figures" / f).read_bytes().startswith(PNG) for f in figures)
    assert all(f"(figures/{f})" in markdown for f in figures)
    assert str(out / "report.md") in capsys.readouterr().out


def test_loss_curves_follow_an_arm_through_its_shared_stages(runs):
    stages = find_stages([runs / "tiny-balanced-to-text-cooldown-text"])
    assert [s.stage for s in stages] == ["init", "cpt", "cooldown"]
    curves = arm_curves(stages)
    assert sorted(curves) == ["code_python", "kjv"]
    kjv = curves["kjv"]
    # init: 80 steps validated every 4; cpt continues from init's 80 steps of tokens.
    assert kjv.tokens[:2] == [4 * STEP_TOKENS, 8 * STEP_TOKENS]
    assert kjv.tokens[20] == (80 + 4) * STEP_TOKENS and kjv.loss[20] == pytest.approx(3.5 - 0.04)
    assert kjv.tokens == sorted(kjv.tokens) and kjv.tokens[-1] == (80 + 80 + 16) * STEP_TOKENS


def test_explicit_baseline_and_one_arm(runs, tmp_path):
    out = tmp_path / "r"
    assert main(["report", str(runs / "tiny-balanced-to-text"), str(runs / "tiny-text-only"), "--out", str(out),
                 "--baseline", "tiny-balanced-to-text", "--resamples", "50"]) == 0
    deltas = read_csv(out / "deltas.csv")
    assert {r["baseline"] for r in deltas} == {"tiny-balanced-to-text/cpt", "tiny-balanced-to-text/cooldown"}
    assert {r["arm"] for r in deltas} == {"tiny-text-only"}


@pytest.mark.parametrize("problem, message", [
    ("missing", "no such run directory"),
    ("empty", "no completed stage"),
    ("baseline", "--baseline 'nope'"),
    ("results", "not a codemix eval results file"),
])
def test_bad_input_is_refused_naming_it(runs, tmp_path, capsys, problem, message):
    target, extra = runs, []
    if problem == "missing":
        target = tmp_path / "nowhere"
    elif problem == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif problem == "baseline":
        extra = ["--baseline", "nope"]
    else:
        next(runs.glob("tiny-text-only/pt-a1/eval")).joinpath("results.json").write_text('{"tasks": {}}')
    assert main(["report", str(target), "--out", str(tmp_path / "out"), "--resamples", "10", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    if problem in ("missing", "empty"):
        assert str(target) in err
    if problem == "results":
        assert "pt-a1/eval/results.json" in err


def test_no_text_only_arm_means_no_deltas(runs, tmp_path):
    out = tmp_path / "r"
    assert main(["report", str(runs / "tiny-balanced-to-text"), "--out", str(out), "--resamples", "10"]) == 0
    assert read_csv(out / "deltas.csv") == []
    assert "No baseline" in (out / "report.md").read_text()


def test_a_stage_superseded_in_its_arm_is_left_out_and_named(runs, tmp_path):
    """An arm trained again after its recipe changed keeps the old stage dir: the later one counts."""
    pt = next((runs / "tiny-text-only").glob("pt-a1"))
    make_stage(runs, "tiny-text-only", "cooldown", "a0", {"kjv": 16 * STEP_TOKENS}, parent=pt,
               results=scores(0, 0, 0, 0), finished_at="2026-11-24T18:00:00+00:00")
    out = tmp_path / "r"
    assert main(["report", str(runs), "--out", str(out), "--resamples", "10"]) == 0
    table = read_csv(out / "table2.csv")
    assert [r["identity"] for r in table if r["arm"] == "tiny-text-only"] == ["a1", "a2"]
    assert "superseded by a later stage of the same name in its arm: tiny-text-only/cooldown" in (
        out / "report.md").read_text()
