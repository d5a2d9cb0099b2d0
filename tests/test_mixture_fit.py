"""The mixture law on synthetic sweeps whose optimum is known."""

import numpy as np
import pytest

from codemix.analysis.mixture_fit import fit_law, recommend

SWEEP = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9])


def test_leave_one_out_picks_the_form_the_data_follows():
    exponential = 1.0 + 0.2 * np.exp(2.0 * SWEEP)
    assert fit_law(SWEEP, exponential).form == "exponential"
    quadratic = 1.2 - 0.6 * SWEEP + 1.0 * SWEEP ** 2
    fit = fit_law(SWEEP, quadratic)
    assert fit.form == "quadratic" and fit.loo_rmse["quadratic"] < 1e-9


def test_recommends_the_known_optimum_and_respects_a_bound():
    rng = np.random.default_rng(0)
    reasoning = 1.2 - 0.6 * SWEEP + 1.0 * SWEEP ** 2 + rng.normal(0, 0.002, len(SWEEP))  # optimum at 0.3
    pick = recommend(SWEEP, reasoning, resamples=200)
    assert pick.fraction == pytest.approx(0.3, abs=0.03) and pick.low <= 0.3 <= pick.high
    knowledge = 1.0 + 0.2 * np.exp(2.0 * SWEEP)  # rises with code; <= 1.3 holds for r <= ln(1.5)/2 = 0.203
    bounded = recommend(SWEEP, reasoning, knowledge, bound_limit=1.3, resamples=200)
    assert bounded.fraction == pytest.approx(np.log(1.5) / 2, abs=0.01)
    assert bounded.bound.form == "exponential"


def test_mixture_fit_reads_a_report_and_recommends(tmp_path, capsys):
    import csv
    import json

    from codemix.cli import main

    rows = []
    for fraction in SWEEP:
        kinds = {"text": int(1000 * (1 - fraction)), "code": int(1000 * fraction)}
        rows.append({"arm": f"tiny-sweep-code-{round(100 * fraction)}", "stage": "pt",
                     "cumulative_tokens_by_kind": json.dumps(kinds),
                     "reasoning_bpb": 1.2 - 0.6 * fraction + fraction ** 2, "knowledge_bpb": 1.0 + 0.2 * np.exp(2 * fraction)})
    with (tmp_path / "table2.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["mixture", "fit", str(tmp_path), "--bound", "knowledge<=1.3", "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "recommended code fraction: 20." in out and "knowledge: exponential law" in out  # ln(1.5) / 2 = 20.3%
    record = json.loads((tmp_path / "mixture_fit.json").read_text())
    assert record["recommended_code_fraction"] == pytest.approx(np.log(1.5) / 2, abs=0.01)
    assert record["interval_95"][0] <= record["recommended_code_fraction"] <= record["interval_95"][1]
    assert record["laws"]["knowledge"]["form"] == "exponential" and record["refits"] == 50
    assert set(record["laws"]) == {"reasoning", "knowledge"}  # every category the table scores in bpb
    assert (tmp_path / "mixture_fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refusals = {"--bound knowledge<=1.1": "no code fraction in 0-90% keeps the fitted bound at or below 1.1",  # lowest: 1.2
                "--target reasonin": "'reasonin': ", "--bound code<=1": "'code': ", "--resamples 0": "--resamples 0",
                "--bound knowledge<=1.9.9": "'knowledge<=1.9.9'", "--sweep paper-": "'paper-': "}
    for argv, named in refusals.items():
        assert main(["mixture", "fit", str(tmp_path), *argv.split()]) == 2
        err = capsys.readouterr().err
        assert err.startswith("codemix: error:") and named in err and err.count("\n") == 1
        assert str(tmp_path) in err or argv in ("--resamples 0", "--bound knowledge<=1.9.9")  # the command line alone
    assert main(["mixture", "fit", str(tmp_path / "nowhere")]) == 2
    assert "codemix: error:" in capsys.readouterr().err

    # a second model size's sweep: one must be chosen, and each is fitted on its own arms only
    with (tmp_path / "table2.csv").open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerows(
            [{**row, "arm": row["arm"].replace("tiny-", "big-"), "reasoning_bpb": row["reasoning_bpb"] - 0.5}
             for row in rows])
    assert main(["mixture", "fit", str(tmp_path)]) == 2
    assert "holds 2 sweeps ('big-', 'tiny-'); choose one with --sweep PREFIX" in capsys.readouterr().err
    assert main(["mixture", "fit", str(tmp_path), "--sweep", "big-", "--resamples", "20"]) == 0
    record = json.loads((tmp_path / "mixture_fit.json").read_text())
    assert record["sweep"] == "big-sweep-code-N" and len(record["sweep_code_fractions"]) == len(SWEEP)
    assert record["series"]["reasoning"][0] == pytest.approx(1.2 - 0.5)

    (tmp_path / "table2.csv").write_text("arm,stage,reasoning_bpb\nx,pt,1.0\n")
    assert main(["mixture", "fit", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no cumulative_tokens_by_kind column" in err and str(tmp_path) in err and err.count("\n") == 1
