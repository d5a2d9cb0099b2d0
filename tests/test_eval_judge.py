"""Win-rates against a real HTTP judge on loopback that speaks the chat-completions API."""

import json
import re

import pytest
from chat_server import chat_server
from test_eval_scoring import FACTS, shared_checkpoint

from codemix.cli import main
from codemix.errors import CodemixError
from codemix.eval.judge import PROMPTS, HttpJudge, LocalJudge, load_prompts, parse_verdict, win_rate
from codemix.eval.runner import Model

GOOD_WORDS = {a for _, a, _ in FACTS}


def _answers(message: str) -> tuple[str, str]:
    found = re.search(r"\[Answer A\]\n(.*)\n\n\[Answer B\]\n(.*)\n\nWhich", message, re.S)
    return found.group(1), found.group(2)


def judge_reply(body: dict) -> str:
    """Deterministic judges: "fair" prefers the answer that is a known right answer, "first" always
    says A (maximal position bias), "broken" replies without a verdict."""
    first, second = _answers(body["messages"][-1]["content"])
    if body["model"] == "first":
        return "Answer A reads better.\n[[A]]"
    if body["model"] == "broken":
        return "I cannot decide."
    good = [a.strip().lower() in GOOD_WORDS for a in (first, second)]
    return "Both equal.\n[[TIE]]" if good[0] == good[1] else ("A is right.\n[[A]]" if good[0] else "B is right.\n[[B]]")


@pytest.fixture(scope="module")
def judge():
    with chat_server(judge_reply) as server:
        yield server


@pytest.fixture(scope="module")
def judge_url(judge):
    return judge.url


PROMPTS_3 = [{"id": str(i), "prompt": q} for i, (q, _, _) in enumerate(FACTS[:3])]


def test_both_orders_are_judged_and_combined(judge, judge_url):
    result = win_rate(PROMPTS_3, ["blue", "nonsense", "cat"], ["grass", "water", "cat"], HttpJudge(judge_url, "fair"))
    assert (result["wins_a"], result["wins_b"], result["ties"]) == (1, 1, 1)
    assert [r["outcome"] for r in result["records"]] == ["a", "b", "tie"]
    first = result["records"][0]
    assert (first["verdict_a_first"], first["verdict_b_first"]) == ("A", "B")
    assert first["raw_a_first"] == "A is right.\n[[A]]"
    sent = judge.requests[-1]["body"]
    assert sent["model"] == "fair" and [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_position_bias_cancels_and_invalid_verdicts_are_counted(judge_url):
    biased = win_rate(PROMPTS_3, ["blue"] * 3, ["red"] * 3, HttpJudge(judge_url + "/chat/completions", "first"))
    assert biased["ties"] == 3 and biased["first_position_wins"] == 6
    broken = win_rate(PROMPTS_3, ["blue"] * 3, ["red"] * 3, HttpJudge(judge_url, "broken"))
    assert broken["invalid_verdicts"] == 6 and broken["ties"] == 3
    with pytest.raises(CodemixError, match="judge"):
        HttpJudge(judge_url.replace("/v1", "/nowhere/chat/completions"), "fair").judge("q", "a", "b")


def test_verdict_parsing_takes_the_last_marker():
    assert parse_verdict("maybe [[A]]... on reflection [[b]]") == "B"
    assert parse_verdict("[[TIE]]") == "TIE" and parse_verdict("A") == "INVALID"


def test_shipped_prompt_set_is_well_formed():
    prompts = load_prompts(PROMPTS)
    assert len(prompts) >= 30 and len({p["id"] for p in prompts}) == len(prompts)


def test_winrate_cli_trained_beats_untrained(judge_url, tmp_path, capsys):
    import torch
    from codemix.model.checkpoint import load_pretrained, save_pretrained

    trained = shared_checkpoint()
    model, cfg, _ = load_pretrained(trained)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(0.0)  # an untrained model: uniform next-token distribution
    untrained = save_pretrained(model, cfg, trained / "tokenizer.json", tmp_path / "b" / "checkpoint")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question: {q}\nAnswer:"}) + "\n" for q, _, _ in FACTS))
    out = tmp_path / "winrate.json"
    code = main(["eval", "winrate", str(trained), str(untrained), "--prompts", str(prompts), "--judge", judge_url,
                 "--judge-model", "fair", "--max-new-tokens", "4", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["wins_a"] == len(FACTS) and result["win_rate_a"] == 1.0
    assert result["a"]["kind"] == "checkpoint" and len(result["records"]) == len(FACTS)
    assert "A wins 4" in capsys.readouterr().err

    local = LocalJudge(Model(*_model_and_tokenizer(trained)))
    verdict, raw = local.judge("What is frozen water called?", "ice", "steam")
    assert verdict in ("A", "B", "TIE") and set(json.loads(raw)) == {"A", "B", "TIE"}


def _model_and_tokenizer(path):
    from codemix.model.checkpoint import load_pretrained

    decoder, _, tokenizer = load_pretrained(path)
    return decoder, tokenizer, tokenizer.token_to_id("<|endoftext|>")
