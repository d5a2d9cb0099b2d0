"""The study's comparisons in the report, on a synthetic result tree laid out as training and
evaluation write it: Fig 6 (cooldown vs none, with code vs without), Fig 4 (the code-fraction sweep
against its 0% model), Fig 5 (quality arms against web code only), baselines matched per row (model
size, cooldown with / without code, --baseline overriding), the summary's counts of deltas whose
interval excludes zero, and the opening lines that say which of the study's directions the runs show."""

from pathlib import Path

import pytest

from codemix.analysis.comparisons import COOLDOWN_WITH_CODE, COOLDOWN_WITHOUT_CODE, WITH_VS_WITHOUT, build_comparisons
from codemix.analysis.findings import ABSENT, CONTRARY, MIXED, SHOWN, UNCLEAR, findings
from codemix.analysis.runs import find_stages
from codemix.analysis.table import BootstrapOptions, build_rows
from codemix.cli import main
from tests.test_report import PNG, STEP_TOKENS, link, make_stage, read_csv, results_json

OPTIONS = BootstrapOptions(resamples=400)
TINY = 1_000_000  # parameters


def study_scores(reasoning: int, knowledge: int, code: int, offset: int = 0, shift: float = 0.0,
                 heldout: tuple[float, float] = (1.0, 2.0)) -> dict:
    """Two reasoning tasks of 200 examples (`reasoning` right in each, from example `offset` on), one
    knowledge task of 100 and one code task of 20; every gold continuation `shift` bits per byte
    dearer; held-out bpb of the text and the code source."""
    results = results_json({"piqa": ("reasoning", "acc", 200, reasoning), "hellaswag": ("reasoning", "acc", 200, reasoning),
                            "triviaqa": ("knowledge", "exact_match", 100, knowledge),
                            "humaneval": ("code", "pass@1", 20, code)}, offset=offset, bpb_shift=shift)
    results["heldout"] = {"corpus": "quickstart", "sources": {
        "kjv": {"kind": "text", "loss": 3.0, "bits_per_byte": heldout[0]},
        "code_python": {"kind": "code", "loss": 3.0, "bits_per_byte": heldout[1]}}}
    return results


def stage(runs: Path, arm: str, name: str, identity: str, tokens: dict[str, int], results: dict, parent=None,
          parameters: int = TINY) -> Path:
    return make_stage(runs, arm, name, identity, {s: n * STEP_TOKENS for s, n in tokens.items()}, parent=parent,
                      results=results, parameters=parameters)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """The tiny study's arms. Designed deltas: balanced -> text's CPT beats text-only in bpb only
    (as many right answers, on other examples; every gold answer 0.3 bits cheaper); its cooldown
    with code is right on more examples but gives every gold answer 0.15 bits more; the sweep's 100%
    model is worse at everything."""
    runs = tmp_path / "runs"
    pt = stage(runs, "tiny-text-only", "pt", "a1", {"kjv": 20}, study_scores(100, 10, 0))
    stage(runs, "tiny-text-only", "cooldown", "a2", {"kjv": 2, "code_python": 1}, study_scores(104, 11, 1), parent=pt)
    link(runs, "tiny-text-only-cooldown-text", pt)
    stage(runs, "tiny-text-only-cooldown-text", "cooldown", "a3", {"kjv": 3}, study_scores(102, 10, 0), parent=pt)
    init = stage(runs, "tiny-balanced-to-text", "init", "b1", {"kjv": 5, "code_python": 5}, study_scores(90, 8, 1))
    cpt = stage(runs, "tiny-balanced-to-text", "cpt", "b2", {"kjv": 9, "code_python": 1},
                study_scores(100, 12, 2, offset=50, shift=-0.3), parent=init)
    stage(runs, "tiny-balanced-to-text", "cooldown", "b3", {"kjv": 2, "code_python": 1},
          study_scores(120, 12, 2, offset=50, shift=-0.15), parent=cpt)
    for shared in (init, cpt):
        link(runs, "tiny-balanced-to-text-cooldown-text", shared)
    stage(runs, "tiny-balanced-to-text-cooldown-text", "cooldown", "b4", {"kjv": 3},
          study_scores(100, 12, 2, offset=50, shift=-0.35), parent=cpt)
    stage(runs, "tiny-sweep-code-0", "pt", "s0", {"kjv": 10}, study_scores(100, 10, 0, heldout=(1.0, 2.0)))
    stage(runs, "tiny-sweep-code-25", "pt", "s25", {"kjv": 15, "code_python": 5},
          study_scores(100, 10, 1, offset=50, heldout=(1.1, 1.6)))
    web = stage(runs, "tiny-sweep-code-100", "pt", "s100", {"code_python": 10},
                study_scores(60, 2, 8, shift=0.2, heldout=(1.9, 1.2)))
    link(runs, "tiny-quality-web", web)
    stage(runs, "tiny-quality-markup", "pt", "q1", {"code_python": 8, "python_docs": 2}, study_scores(64, 3, 6))
    return runs


def test_cooldown_comparisons_within_an_arm(runs):
    rows = build_rows(find_stages([runs]), options=OPTIONS)
    study = build_comparisons(rows, OPTIONS)
    pairs = {(c.kind, c.arm.run.label, c.reference.run.label) for c in study.cooldown}
    assert pairs == {
        (COOLDOWN_WITH_CODE, "tiny-text-only/cooldown", "tiny-text-only/pt"),
        (COOLDOWN_WITHOUT_CODE, "tiny-text-only-cooldown-text/cooldown", "tiny-text-only/pt"),
        (WITH_VS_WITHOUT, "tiny-text-only/cooldown", "tiny-text-only-cooldown-text/cooldown"),
        # the CPT both cooldowns start from is shown under the arm that trained it first
        (COOLDOWN_WITH_CODE, "tiny-balanced-to-text/cooldown", "tiny-balanced-to-text/cpt"),
        (COOLDOWN_WITHOUT_CODE, "tiny-balanced-to-text-cooldown-text/cooldown", "tiny-balanced-to-text/cpt"),
        (WITH_VS_WITHOUT, "tiny-balanced-to-text/cooldown", "tiny-balanced-to-text-cooldown-text/cooldown")}
    with_code = next(c for c in study.cooldown if c.kind == COOLDOWN_WITH_CODE and c.arm.run.identity == "b3")
    reasoning = with_code.deltas["reasoning"]
    assert reasoning.relative.estimate == pytest.approx(100 * (0.6 / 0.5 - 1))
    assert reasoning.absolute.low > 0  # right on a superset of the CPT's examples
    # 0.1 fewer bits for the examples it gets right, 0.15 more for every one: accuracy up, bpb worse
    assert with_code.deltas["reasoning_bpb"].absolute.estimate == pytest.approx(-0.1 + 0.15)
    assert with_code.deltas["reasoning_bpb"].absolute.low > 0
    assert with_code.deltas["knowledge_bpb"].absolute.low == pytest.approx(0.15)  # same answers right, 0.15 bits dearer


def test_sweep_points_against_the_zero_percent_model(runs):
    study = build_comparisons(build_rows(find_stages([runs]), options=OPTIONS), OPTIONS)
    assert [(p.nominal, round(100 * p.code_share)) for p in study.sweep] == [(0, 0), (25, 25), (100, 100)]
    zero, quarter, full = study.sweep
    assert zero.vs_zero is None and zero.heldout_change == {"kjv": 0.0, "code_python": 0.0}
    assert quarter.vs_zero.reference is zero.row
    assert quarter.heldout_change == pytest.approx({"kjv": 0.1, "code_python": -0.4})
    reasoning = quarter.vs_zero.deltas["reasoning"]
    assert reasoning.absolute.estimate == 0 and reasoning.absolute.low < 0 < reasoning.absolute.high
    assert full.vs_zero.deltas["knowledge"].absolute.high < 0 and full.vs_zero.deltas["knowledge_bpb"].absolute.low > 0


def test_quality_arms_against_web_code_only(runs):
    study = build_comparisons(build_rows(find_stages([runs]), options=OPTIONS), OPTIONS)
    assert [(c.kind, c.arm.run.label, c.reference.run.label) for c in study.quality] == [
        ("markup vs web code only", "tiny-quality-markup/pt", "tiny-quality-web/pt")]
    assert study.quality[0].deltas["reasoning"].relative.estimate == pytest.approx(100 * (0.32 / 0.30 - 1))


def test_baselines_are_matched_per_row(runs):
    rows = {row.run.label: row for row in build_rows(find_stages([runs]), options=OPTIONS)}
    matched = {label: row.baseline.run.label for label, row in rows.items() if row.deltas}
    assert matched["tiny-balanced-to-text/cooldown"] == "tiny-text-only/cooldown"  # with code: with code
    assert matched["tiny-balanced-to-text-cooldown-text/cooldown"] == "tiny-text-only-cooldown-text/cooldown"
    assert matched["tiny-balanced-to-text/cpt"] == "tiny-text-only/pt"
    assert matched["tiny-sweep-code-25/pt"] == "tiny-text-only/pt"
    # both text-only arms are baselines: neither gets deltas
    assert not rows["tiny-text-only/cooldown"].deltas and not rows["tiny-text-only-cooldown-text/cooldown"].deltas
    assert not any(row.baseline_note for row in rows.values())


def test_baseline_override_takes_the_other_kind_and_says_so(runs):
    rows = {row.run.label: row for row in build_rows(find_stages([runs]), "tiny-text-only", OPTIONS)}
    without = rows["tiny-balanced-to-text-cooldown-text/cooldown"]
    assert without.baseline.run.label == "tiny-text-only/cooldown"
    assert "no cooldown without code" in without.baseline_note
    assert rows["tiny-text-only-cooldown-text/cooldown"].deltas  # no longer a baseline


def test_baselines_match_the_model_size(tmp_path):
    runs = tmp_path / "runs"
    for size, tag, parameters in (("470m", "m", 470_000_000), ("2p8b", "b", 2_800_000_000)):
        stage(runs, f"paper-{size}-text-only", "pt", f"t{tag}", {"kjv": 20}, study_scores(100, 10, 0), parameters=parameters)
        stage(runs, f"paper-{size}-balanced-only", "pt", f"o{tag}", {"kjv": 10, "code_python": 10},
              study_scores(104, 10, 2), parameters=parameters)
    stage(runs, "paper-1b-balanced-only", "pt", "o1", {"kjv": 10, "code_python": 10}, study_scores(104, 10, 2),
          parameters=1_000_000_000)
    rows = {row.run.arm: row for row in build_rows(find_stages([runs]), options=OPTIONS)}
    assert rows["paper-470m-balanced-only"].baseline.run.arm == "paper-470m-text-only"
    assert rows["paper-2p8b-balanced-only"].baseline.run.arm == "paper-2p8b-text-only"
    assert rows["paper-1b-balanced-only"].baseline is None and not rows["paper-1b-balanced-only"].deltas
    override = {row.run.arm: row for row in build_rows(find_stages([runs]), "paper-470m-text-only", OPTIONS)}
    assert override["paper-2p8b-balanced-only"].baseline.run.arm == "paper-470m-text-only"  # --baseline: any size


SIZES = (("470m", 470_000_000, 0), ("2p8b", 2_800_000_000, 40))  # arm prefix, parameters, extra right answers


@pytest.fixture
def two_sizes(tmp_path: Path) -> Path:
    """A sweep and quality arms at each of two sizes, the larger 40 answers better throughout: compared
    across sizes, every 470M delta would come out negative."""
    runs = tmp_path / "runs"
    for size, parameters, better in SIZES:
        for nominal, tokens in ((0, {"kjv": 20}), (50, {"kjv": 10, "code_python": 10}), (100, {"code_python": 20})):
            stage(runs, f"paper-{size}-sweep-code-{nominal}", "pt", f"s{nominal}-{size}", tokens,
                  study_scores(100 + better + nominal // 10, 10, 0), parameters=parameters)
        for quality, right in (("web", 100), ("markup", 110)):
            stage(runs, f"paper-{size}-quality-{quality}", "pt", f"q{quality}-{size}", {"code_python": 20},
                  study_scores(right + better, 10, 0), parameters=parameters)
    return runs


def test_sweep_and_quality_are_compared_within_each_model_size(two_sizes):
    study = build_comparisons(build_rows(find_stages([two_sizes]), options=OPTIONS), OPTIONS)
    assert [(p.row.run.arm, p.vs_zero and p.vs_zero.reference.run.arm) for p in study.sweep] == [
        ("paper-470m-sweep-code-0", None), ("paper-470m-sweep-code-50", "paper-470m-sweep-code-0"),
        ("paper-470m-sweep-code-100", "paper-470m-sweep-code-0"),
        ("paper-2p8b-sweep-code-0", None), ("paper-2p8b-sweep-code-50", "paper-2p8b-sweep-code-0"),
        ("paper-2p8b-sweep-code-100", "paper-2p8b-sweep-code-0")]
    half = next(p for p in study.sweep if p.row.run.arm == "paper-470m-sweep-code-50")
    assert half.vs_zero.deltas["reasoning"].absolute.estimate == pytest.approx(5 / 200)  # not 35 fewer
    assert [(c.arm.run.arm, c.reference.run.arm) for c in study.quality] == [
        ("paper-470m-quality-markup", "paper-470m-quality-web"), ("paper-2p8b-quality-markup", "paper-2p8b-quality-web")]
    assert all(c.deltas["reasoning"].absolute.estimate == pytest.approx(10 / 200) for c in study.quality)


def test_report_shows_each_model_size_under_its_own_heading(two_sizes, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(two_sizes), "--out", str(out), "--resamples", "20"]) == 0
    markdown = (out / "report.md").read_text()
    fig4, fig5 = markdown.split("## Code-fraction sweep")[1].split("## Code quality")
    assert fig4.index("### 470M parameters") < fig4.index("### 2.8B parameters")
    small, large = fig4.split("### 2.8B parameters")
    assert "Change against the 0% model (paper-470m-sweep-code-0/pt)" in small
    assert "Change against the 0% model (paper-2p8b-sweep-code-0/pt)" in large
    assert "paper-2p8b" not in small and "paper-470m" not in large
    for size, _, _ in SIZES:
        assert f"| markup vs web code only | paper-{size}-quality-markup/pt | paper-{size}-quality-web/pt |" in fig5
    assert "### 470M parameters" in fig5 and "### 2.8B parameters" in fig5
    assert (out / "figures" / "sweep.png").read_bytes()[:8] == PNG  # a curve per size, each against its own 0%
    assert [(r["parameters"], r["arm"]) for r in read_csv(out / "sweep.csv")] == [
        (str(parameters), f"paper-{size}-sweep-code-{nominal}") for size, parameters, _ in SIZES for nominal in (0, 50, 100)]
    compared = {(r["figure"], r["arm"], r["baseline"]) for r in read_csv(out / "comparisons.csv")}
    assert compared == {(figure, f"paper-{size}-{arm}", f"paper-{size}-{reference}/pt") for size, _, _ in SIZES
                        for figure, arm, reference in (("Fig 4", "sweep-code-50", "sweep-code-0"),
                                                       ("Fig 4", "sweep-code-100", "sweep-code-0"),
                                                       ("Fig 5", "quality-markup", "quality-web"))}


def test_findings_say_which_directions_the_runs_show(runs):
    study = build_comparisons(build_rows(find_stages([runs]), options=OPTIONS), OPTIONS)
    verdicts = [(f.direction.claim.split(" (")[0], f.direction.score, f.verdict, f.shown_by) for f in findings(study)]
    assert verdicts == [
        ("balanced -> text after CPT over text-only", "reasoning", SHOWN, ("bpb",)),  # accuracy: as many right
        ("balanced -> text after CPT over text-only", "knowledge", SHOWN, ("bpb",)),
        ("balanced -> text after CPT over text-only", "code", SHOWN, ("bpb",)),
        ("25% code over 0%", "reasoning", UNCLEAR, ()),
        ("100% code against 0%", "reasoning", SHOWN, ("accuracy", "bpb")),
        ("100% code against 0%", "knowledge", SHOWN, ("accuracy", "bpb")),
        ("10% synthetic code over web code only", "reasoning", ABSENT, ()),  # no synthetic arm
        ("10% synthetic code over web code only", "code", ABSENT, ()),
        ("balanced -> text: cooldown with code over no cooldown", "reasoning", MIXED, ("accuracy",)),
        ("balanced -> text: cooldown with code over no cooldown", "knowledge", CONTRARY, ()),
        ("balanced -> text: cooldown with code over no cooldown", "code", CONTRARY, ())]


def test_report_opens_with_the_findings_and_counts_every_figure(runs, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--resamples", "400"]) == 0
    markdown = (out / "report.md").read_text()
    opening = markdown.split("## Table 2")[0]
    assert ("Of the study's 11 directions checked here, this run shows 5 (3 of them in bits per byte only), "
            "contradicts 2, is mixed on 1, cannot tell 1") in opening
    assert ("- **shown**: balanced -> text after CPT over text-only, reasoning (study: +8.2%): accuracy +0.0% ["
            in opening)
    assert "bpb -0.300 [" in opening and "(tiny-balanced-to-text/cpt vs tiny-text-only/pt)" in opening
    assert "- **not measured**: 10% synthetic code over web code only, reasoning (study: +9%): no evaluated pair" in opening
    counts = next(line for line in opening.splitlines() if line.startswith("Deltas whose 95% interval excludes zero"))
    for section in ("Table 2 (vs the baselines): ", "Fig 6 (cooldowns): ", "Fig 4 (sweep vs 0% code): ",
                    "Fig 5 (quality vs web code): "):
        assert section in counts
    fig6 = [r for r in read_csv(out / "comparisons.csv") if r["figure"] == "Fig 6"]
    # Fig 6's count, recomputed from the CSV: 6 comparisons x 5 accuracy-style scores
    accuracy = [r for r in fig6 if not r["score"].endswith("bpb")]
    hits = sum(1 for r in accuracy if float(r["delta_pts_low"]) > 0 or float(r["delta_pts_high"]) < 0)
    bpb = [r for r in fig6 if r["score"].endswith("bpb")]
    bpb_hits = sum(1 for r in bpb if float(r["delta_pts_low"]) > 0 or float(r["delta_pts_high"]) < 0)
    assert len(accuracy) == 30
    assert (f"Fig 6 (cooldowns): {hits} of {len(accuracy)} in the accuracy columns, "
            f"{bpb_hits} of {len(bpb)} in the bits-per-byte columns") in counts

    assert "## Cooldown (the study's Fig 6)" in markdown
    assert ("| cooldown with code vs none | tiny-balanced-to-text/cooldown | tiny-balanced-to-text/cpt | +20.0% ["
            in markdown)
    assert "## Code-fraction sweep (the study's Fig 4)" in markdown
    assert "| 25 (25) | tiny-sweep-code-25/pt | 50.0 | 10.0 | 5.0 |" in markdown
    assert "| -0.400 | +0.100 |" in markdown  # held-out bpb change of the 25% model: code_python, kjv
    assert "## Code quality (the study's Fig 5)" in markdown
    assert "| markup vs web code only | tiny-quality-markup/pt | tiny-quality-web/pt |" in markdown
    sweep = read_csv(out / "sweep.csv")
    assert [(r["arm"], float(r["observed_code_pct"])) for r in sweep] == [
        ("tiny-sweep-code-0", 0.0), ("tiny-sweep-code-25", 25.0), ("tiny-sweep-code-100", 100.0)]
    assert float(sweep[2]["heldout_kjv_bpb_change"]) == pytest.approx(0.9)
    assert float(sweep[2]["delta_reasoning_bpb"]) == pytest.approx(0.4)  # 0.2 fewer right + 0.2 shift
    assert (out / "figures" / "sweep.png").read_bytes().startswith(PNG)
    assert "(figures/sweep.png)" in markdown


def test_no_sweep_or_quality_arms_means_no_such_sections(tmp_path):
    runs = tmp_path / "runs"
    stage(runs, "tiny-text-only", "pt", "a1", {"kjv": 20}, study_scores(100, 10, 0))
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--resamples", "20"]) == 0
    markdown = (out / "report.md").read_text()
    assert "Fig 4" not in markdown and "Fig 5" not in markdown and "Fig 6" not in markdown
    assert "lacks the arms or scores for 11" in markdown
    assert not (out / "comparisons.csv").exists() and not (out / "figures" / "sweep.png").exists()


@pytest.mark.slow
def test_smoke_study_report_opens_with_findings_and_compares_its_cooldowns(smoke_reproduction):
    """On the real smoke study (tests/reproduce_fixtures.py: trained and evaluated once a session)."""
    report = smoke_reproduction.report
    markdown = (report / "report.md").read_text()
    assert markdown.startswith("# codemix report\n\nOf the study's 11 directions checked here, this run shows ")
    opening = markdown.split("## Table 2")[0]
    assert "(tiny-smoke-balanced-to-text/cpt vs tiny-smoke-text-only/pt)" in opening  # the headline pair
    assert "- **not measured**: 25% code over 0%" in opening  # the smoke study has no sweep
    assert "Table 2 (vs the baselines): " in opening and "Fig 6 (cooldowns): " in opening
    compared = {(r["figure"], r["comparison"], r["arm"], r["baseline"]) for r in read_csv(report / "comparisons.csv")}
    assert compared == {
        ("Fig 6", COOLDOWN_WITH_CODE, "tiny-smoke-text-only", "tiny-smoke-text-only/pt"),
        ("Fig 6", COOLDOWN_WITH_CODE, "tiny-smoke-balanced-to-text", "tiny-smoke-balanced-to-text/cpt"),
        ("Fig 6", COOLDOWN_WITHOUT_CODE, "tiny-smoke-balanced-to-text-cooldown-text", "tiny-smoke-balanced-to-text/cpt"),
        ("Fig 6", WITH_VS_WITHOUT, "tiny-smoke-balanced-to-text", "tiny-smoke-balanced-to-text-cooldown-text/cooldown"),
        ("Fig 4", "50% code vs 0%", "tiny-smoke-sweep-code-50", "tiny-smoke-sweep-code-0/pt"),
        ("Fig 5", "markup vs web code only", "tiny-smoke-quality-markup", "tiny-smoke-quality-web/pt")}
    assert "## Cooldown (the study's Fig 6)" in markdown
    fig4, fig5 = markdown.split("## Code-fraction sweep (the study's Fig 4)")[1].split("## Code quality (the study's Fig 5)")
    assert "| 0 (0) | tiny-smoke-sweep-code-0/pt |" in fig4 and "| 50 (50) | tiny-smoke-sweep-code-50/pt |" in fig4
    assert "Change against the 0% model (tiny-smoke-sweep-code-0/pt)" in fig4
    assert "| markup vs web code only | tiny-smoke-quality-markup/pt | tiny-smoke-quality-web/pt |" in fig5
    sweep = read_csv(report / "sweep.csv")
    assert [row["arm"] for row in sweep] == ["tiny-smoke-sweep-code-0", "tiny-smoke-sweep-code-50"]
    assert (report / "figures" / "sweep.png").read_bytes()[:8] == PNG
