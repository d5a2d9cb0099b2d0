"""`codemix reproduce --seeds 2 --judge URL` for real: three short recipes on the small corpus
(tests/corpus_fixtures.py), two of them sharing a stage, trained once per seed, evaluated,
judged by a real HTTP judge on loopback (tests/chat_server.py), and reported; and `--judge` on the
smoke study itself, whose trained and evaluated stages are all reused."""

import csv
import json
import re
from pathlib import Path

import pytest
from chat_server import chat_server

from codemix.analysis.runs import find_stages
from codemix.cli import main
from reproduce_fixtures import REPO, Reproduction

# Six short stages trained and evaluated (and the smoke study, once a session, for the last test).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
BASE = REPO / "recipes" / "tiny" / "base.yaml"
ARMS = ("s-text-only", "s-balanced", "s-balanced-cooldown-text")
# One step at the peak LR (base.yaml's cosine; a one-step linear anneal would sit at its final 1e-6).
COOLDOWN = "{tokens: 4096, mixture: {text: 1.0}, init_from: {ref: 'stage:pt'}}"


def longer_answer_wins(body: dict) -> str:
    """A deterministic judge that does not care about position: the longer answer is better."""
    found = re.search(r"\[Answer A\]\n(.*)\n\n\[Answer B\]\n(.*)\n\nWhich", body["messages"][-1]["content"], re.S)
    a, b = len(found.group(1)), len(found.group(2))
    return "Equal.\n[[TIE]]" if a == b else ("A says more.\n[[A]]" if a > b else "B says more.\n[[B]]")


def _write_recipes(folder: Path, corpus: Path) -> None:
    # four steps of 8 x 128 tokens a stage (the small corpus's windows)
    data = f"data: {{corpus: {corpus}, build: null}}\nstage_defaults: {{seq_len: 128, global_batch: 8, micro_batch: 8}}\n"
    (folder / "text_only.yaml").write_text(
        f"base: [{BASE}]\nname: s-text-only\n{data}stages:\n  pt: {{tokens: 4096, mixture: {{text: 1.0}}, init_from: {{ref: scratch}}}}\n")
    (folder / "balanced.yaml").write_text(
        f"base: [{BASE}]\nname: s-balanced\n{data}"
        "stages:\n  pt: {tokens: 4096, mixture: {text: 0.5, code: 0.5}, init_from: {ref: scratch}}\n")
    # shares s-balanced's pt (the same identity per seed), then cools down on text
    (folder / "balanced_cooldown_text.yaml").write_text(
        f"base: [balanced.yaml]\nname: s-balanced-cooldown-text\nstages:\n  cooldown: {COOLDOWN}\n")


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as src:
        return list(csv.DictReader(src))


@pytest.fixture(scope="module")
def seeded(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("seeded")
    recipes = root / "recipes"
    recipes.mkdir()
    _write_recipes(recipes, small_corpus)
    home, out = root / "home", root / "report"
    with chat_server(longer_answer_wins) as judge:
        code = main(["reproduce", str(recipes), "--seeds", "2", "--home", str(home), "--limit", "1",
                     "--judge", judge.url, "--judge-model", "longer", "--out", str(out)])
    assert code == 0
    return home, out, judge.requests


def test_every_arm_trains_once_per_seed_and_shared_stages_stay_shared(seeded):
    home, out, _ = seeded
    runs = home / "runs"
    assert len(list((runs / "_stages").iterdir())) == 6  # 3 distinct stages x 2 seeds
    for arm in ARMS:
        stages = find_stages([runs / arm])
        names = ["pt", "pt"] if arm != "s-balanced-cooldown-text" else ["pt", "pt", "cooldown", "cooldown"]
        assert sorted(run.stage for run in stages) == sorted(names)
        assert sorted(run.seed for run in stages) == sorted([0, 1] * (len(names) // 2))  # told apart in lineage
        assert len({run.identity for run in stages}) == len(names)
    for seed_dir in (runs / "s-balanced-cooldown-text").glob("pt-*"):  # linked to s-balanced's, trained once
        assert seed_dir.is_symlink()
        assert len(json.loads((seed_dir / "attempts.json").read_text())["attempts"]) == 1
    summary = json.loads((out / "reproduce.json").read_text())
    assert set(summary["seeds"].values()) == {2} and summary["distinct_stages"] == 6 and summary["stages"] == 8


def test_report_gives_mean_and_seed_spread_and_bootstraps_over_seeds(seeded):
    _, out, _ = seeded
    table = {(row["arm"], row["stage"]): row for row in _csv(out / "table2.csv")}
    assert sorted(table) == [("s-balanced", "pt"), ("s-balanced-cooldown-text", "cooldown"), ("s-text-only", "pt")]
    assert all(row["seeds"] == "0, 1" and row["evaluated_seeds"] == "2" for row in table.values())
    assert all(row["reasoning_bpb_sd"] for row in table.values())  # a spread over two seeds
    seeds = _csv(out / "seeds.csv")
    assert len(seeds) == 6 and {row["seed"] for row in seeds} == {"0", "1"}
    for (arm, stage), row in table.items():
        mine = [float(s["reasoning_bpb"]) for s in seeds if (s["arm"], s["stage"]) == (arm, stage)]
        assert float(row["reasoning_bpb"]) == pytest.approx(sum(mine) / 2)
    deltas = {row["score"]: row for row in _csv(out / "deltas.csv") if row["arm"] == "s-balanced"}
    assert deltas["reasoning bpb"]["baseline"] == "s-text-only/pt"
    markdown = (out / "report.md").read_text()
    assert "| reasoning averages | seeds |" in markdown and "± " in markdown
    assert "interval over seeds and, inside each seed, the examples" in markdown
    assert "## Cooldown (the study's Fig 6)" in markdown  # the cooldown vs its pt, over the seeds


def test_judge_compares_each_seeds_cooldown_with_its_no_cooldown(seeded):
    _, out, requests = seeded
    files = sorted((out / "winrates").glob("*.json"))
    assert len(files) == 2  # cooldown vs pt, once per seed
    results = [json.loads(path.read_text()) for path in files]
    assert all(r["comparison"] == "cooldown vs no cooldown" and r["prompts"] == 1 for r in results)
    assert all(r["judge"] == {"endpoint": r["judge"]["endpoint"], "model": "longer"} for r in results)
    assert {r["a"]["stage"] for r in results} == {"cooldown"} and {r["b"]["stage"] for r in results} == {"pt"}
    assert len(requests) == 2 * 2  # two pairs, one prompt, both answer orders
    markdown = (out / "report.md").read_text()
    for seed in (0, 1):
        assert f"| s-balanced-cooldown-text/cooldown seed {seed} | s-balanced/pt seed {seed} | 1 |" in markdown
    assert {row["a"] for row in _csv(out / "winrates.csv")} == {
        "s-balanced-cooldown-text/cooldown seed 0", "s-balanced-cooldown-text/cooldown seed 1"}


SMOKE_PAIRS = {  # (A, B): the smoke study's win-rate pairs
    ("tiny-smoke-balanced-to-text/cooldown", "tiny-smoke-text-only/cooldown"),
    ("tiny-smoke-balanced-to-text-cooldown-text/cooldown", "tiny-smoke-text-only/cooldown"),
    ("tiny-smoke-text-only/cooldown", "tiny-smoke-text-only/pt"),
    ("tiny-smoke-balanced-to-text/cooldown", "tiny-smoke-balanced-to-text/cpt"),
    ("tiny-smoke-balanced-to-text-cooldown-text/cooldown", "tiny-smoke-balanced-to-text/cpt"),
}


def test_judge_on_the_smoke_study_runs_its_win_rate_comparisons_once(smoke_reproduction: Reproduction, tmp_path, capsys):
    out = tmp_path / "report"
    command = ["reproduce", str(REPO / "recipes" / "tiny"), "--smoke", "--home", str(smoke_reproduction.home), "--out", str(out)]
    with chat_server(longer_answer_wins) as judge:
        assert main([*command, "--judge", judge.url, "--judge-model", "longer"]) == 0
        judged = len(judge.requests)
        assert main([*command, "--judge", judge.url, "--judge-model", "longer"]) == 0  # again: nothing to judge
        assert len(judge.requests) == judged
    said = capsys.readouterr().out
    assert "win-rates: 5 pairs, 5 already judged" in said
    rows = _csv(out / "winrates.csv")
    assert {(row["a"], row["b"]) for row in rows} == SMOKE_PAIRS
    prompts = rows[0]["prompts"]
    assert prompts == "2" and judged == len(SMOKE_PAIRS) * 2 * 2  # --smoke's limit: 2 prompts, both orders
    markdown = (out / "report.md").read_text()
    assert "## Generative win-rates" in markdown
    table = markdown.split("## Generative win-rates", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| tiny-smoke-text-only/cooldown \| tiny-smoke-text-only/pt \| 2 \| \d \| \d \| \d \| "
                     r"\d+\.\d \[\d+\.\d, \d+\.\d\] \|", table)  # with its bootstrap interval
