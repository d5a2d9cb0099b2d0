"""`codemix report` over arms trained once per seed: one row per arm's stage with the mean over seeds and
the seed spread, seeds.csv per seed, deltas bootstrapped over seeds and examples (stage directories
laid out as training writes them, results JSONs written here; tests/test_report.py's helpers)."""

import numpy as np
import pytest
from test_report import STEP_TOKENS, make_stage, read_csv, scores

from codemix.analysis.bootstrap import paired_delta, seeded_delta
from codemix.analysis.eval_results import read_eval_results
from codemix.analysis.runs import find_stages, latest_per_stage
from codemix.analysis.table import BootstrapOptions, build_rows, score_deltas
from codemix.cli import main

# seed -> (piqa right of 200, hellaswag, triviaqa of 100, humaneval of 20) per arm
TEXT_ONLY = {0: (110, 100, 10, 0), 1: (120, 96, 12, 1)}
BALANCED = {0: (130, 110, 12, 2), 1: (124, 118, 16, 3)}


@pytest.fixture
def seeded_runs(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        make_stage(runs, "tiny-text-only", "pt", f"t{seed}", {"kjv": 16 * STEP_TOKENS},
                   results=scores(*TEXT_ONLY[seed]), seed=seed)
        make_stage(runs, "tiny-balanced-to-text", "pt", f"b{seed}", {"kjv": 8 * STEP_TOKENS, "code_python": 8 * STEP_TOKENS},
                   results=scores(*BALANCED[seed]), seed=seed)
    return runs


def _reasoning(piqa: int, hellaswag: int) -> float:
    return (piqa / 200 + hellaswag / 200) / 2


def test_table_gives_the_mean_and_seed_spread_and_seeds_csv_each_seed(seeded_runs, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(seeded_runs), "--out", str(out), "--resamples", "300"]) == 0
    table = {row["arm"]: row for row in read_csv(out / "table2.csv")}
    assert len(table) == 2  # one row per arm's stage, not per seed
    balanced = table["tiny-balanced-to-text"]
    values = [_reasoning(*BALANCED[seed][:2]) for seed in (0, 1)]
    assert float(balanced["reasoning_pct"]) == pytest.approx(100 * np.mean(values), abs=0.05)
    assert float(balanced["reasoning_pct_sd"]) == pytest.approx(100 * np.std(values, ddof=1), abs=0.05)
    assert balanced["seeds"] == "0, 1" and balanced["evaluated_seeds"] == "2"
    per_seed = read_csv(out / "seeds.csv")
    assert [(r["arm"], r["seed"], r["identity"]) for r in per_seed] == [
        ("tiny-text-only", "0", "t0"), ("tiny-text-only", "1", "t1"),
        ("tiny-balanced-to-text", "0", "b0"), ("tiny-balanced-to-text", "1", "b1")]
    assert float(per_seed[3]["reasoning_pct"]) == pytest.approx(100 * values[1], abs=0.05)
    markdown = (out / "report.md").read_text()
    mean, sd = 100 * np.mean(values), 100 * np.std(values, ddof=1)
    assert f"| tiny-balanced-to-text | pt | 65.5K | 65.5K | {mean:.1f} ± {sd:.1f} |" in markdown
    assert "| reasoning averages | seeds |" in markdown and "| 2 of 4 tasks | 0, 1 |" in markdown
    assert "over seeds and, inside each seed, the examples" in markdown
    deltas = {r["score"]: r for r in read_csv(out / "deltas.csv")}
    assert float(deltas["reasoning"]["arm_pct"]) == pytest.approx(100 * np.mean(values))


def test_deltas_bootstrap_over_seeds_and_examples(seeded_runs):
    stages, superseded = latest_per_stage(find_stages([seeded_runs]))
    assert not superseded and sorted(run.seed for run in stages) == [0, 0, 1, 1]  # other seeds, not superseded
    options = BootstrapOptions(resamples=400, seed=5)
    rows = build_rows(stages, options=options)
    balanced = next(row for row in rows if row.run.arm == "tiny-balanced-to-text")
    assert [run.identity for run in balanced.seed_runs] == ["b0", "b1"] and balanced.baseline.run.arm == "tiny-text-only"
    # the reasoning delta is seeded_delta over the two seeds' (arm, baseline) tasks, the k-th seeds paired
    seeds = []
    for seed in (0, 1):
        arm, base = (read_eval_results(seeded_runs / a / f"pt-{p}{seed}" / "eval" / "results.json")
                     for a, p in (("tiny-balanced-to-text", "b"), ("tiny-text-only", "t")))
        seeds.append([[tuple(np.array([scores.tasks[t].examples[i] for i in sorted(arm.tasks[t].examples)])
                             for scores in (arm, base)) for t in ("hellaswag", "piqa")]])
    expected = seeded_delta(seeds, 400, 0.95, 5)
    assert balanced.deltas["reasoning"] == expected
    alone = score_deltas(balanced.seed_scores[:1], balanced.baseline.seed_scores[:1], options)["reasoning"]
    assert alone == paired_delta(seeds[0], 400, 0.95, 5)  # one seed a side: the paired bootstrap over examples


def test_winrate_labels_name_the_seed(seeded_runs, tmp_path):
    import json

    winrate = tmp_path / "w.json"
    winrate.write_text(json.dumps({"a": {"identity": "b1"}, "b": {"identity": "t1"},
                                   "records": [{"outcome": o} for o in "aab"]}))
    out = tmp_path / "report"
    assert main(["report", str(seeded_runs), "--out", str(out), "--resamples", "50", "--winrate", str(winrate)]) == 0
    assert "| tiny-balanced-to-text/pt seed 1 | tiny-text-only/pt seed 1 | 3 | 2 | 1 | 0 |" in (out / "report.md").read_text()
