"""Scoring mechanics on a real tiny Decoder trained for a few seconds to memorise some answers, with a
real byte-level BPE tokenizer: the scorers must find what the model was taught."""

import functools
import json
import math
import tempfile
from itertools import combinations
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codemix.data.tokenizer import EOS, save_tokenizer, train_bpe
from codemix.eval.aggregate import aggregate
from codemix.eval.generation import GenerationConfig, cut_at_stop, generate
from codemix.eval.loglik import encode_pair, score
from codemix.eval.metrics import exact_match, normalize_answer, pass_at_k
from codemix.eval.runner import EvalOptions, Model, run_task
from codemix.eval.tasks.base import CodeProblem, TaskData, TaskSpec
from codemix.eval.tasks.user import load_user_task
from codemix.model.checkpoint import save_pretrained
from codemix.config.presets import preset
from codemix.model.transformer import Decoder
from codemix.sandbox import Limits, Sandbox

FACTS = [("What colour is the sky on a clear day?", "blue", ["green", "blue", "purple"]),
         ("What do cows drink?", "water", ["milk", "juice", "water"]),
         ("Which animal says meow?", "cat", ["cat", "dog", "horse"]),
         ("What is frozen water called?", "ice", ["steam", "ice", "sand"])]
ADD = CodeProblem("add", "def add(a, b):\n    return", "assert add(2, 3) == 5", " a + b\n")
SUB = CodeProblem("sub", "def sub(a, b):\n    return", "assert sub(7, 3) == 4", " a - b\n")
DOCS = [f"Question: {q}\nAnswer: {a}" for q, a, _ in FACTS] + [p.prompt + p.reference for p in (ADD, SUB)]


def train_checkpoint(folder: Path, steps: int = 150) -> Path:
    """A tiny model that has memorised DOCS (each between eos tokens), saved with save_pretrained."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bpe(DOCS * 4 + ["the a an of to is and in"] * 4, vocab_size=300, min_frequency=2)
    tokenizer_path = folder / "tokenizer.json"
    save_tokenizer(tokenizer, tokenizer_path)
    eos = tokenizer.token_to_id(EOS)
    cfg = preset("tiny", vocab_size=tokenizer.get_vocab_size(), d_model=64, n_layers=2, n_heads=2, max_seq_len=128)
    model = Decoder(cfg)
    rows = [[eos, *tokenizer.encode(doc).ids, eos] for doc in DOCS]
    width = max(map(len, rows))
    batch = torch.tensor([row + [eos] * (width - len(row)) for row in rows])
    targets = torch.tensor([row[1:] + [-100] * (width - len(row)) for row in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), targets.flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # What follows "Question:" is a guess among the questions; everything after it is memorised.
    assert loss.item() < 0.3, f"tiny model failed to memorise its documents (loss {loss.item():.3f})"
    return save_pretrained(model.eval(), cfg, tokenizer_path, folder / "checkpoint")


@functools.cache
def shared_checkpoint() -> Path:
    """One trained checkpoint for every eval test file of the session (treat it as read-only)."""
    return train_checkpoint(Path(tempfile.mkdtemp(prefix="eval-checkpoint-")))


def write_user_tasks(folder: Path) -> tuple[Path, Path]:
    rows = [{"question": q, "options": options, "label": options.index(a), "answer": a} for q, a, options in FACTS]
    (folder / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = "data: facts.jsonl\ncontext: \"Question: {question}\\nAnswer:\"\n"
    mc = folder / "facts_mc.yaml"
    mc.write_text("name: facts_mc\nkind: multiple_choice\ncategory: reasoning\n" + common + "choices: options\ngold: label\n")
    gen = folder / "facts_qa.yaml"
    gen.write_text("name: facts_qa\nkind: generation\ncategory: knowledge\n" + common + "answers: answer\n")
    return mc, gen


@pytest.fixture(scope="module")
def trained() -> Model:
    from codemix.model.checkpoint import load_pretrained

    decoder, _, tokenizer = load_pretrained(shared_checkpoint())
    return Model(decoder, tokenizer, tokenizer.token_to_id(EOS))


@pytest.fixture(scope="module")
def options() -> EvalOptions:
    return EvalOptions(sandbox=Sandbox(Limits(wall_s=5, cpu_s=5), workers=2))


def test_multiple_choice_picks_the_answer_the_model_was_taught(trained, options, tmp_path):
    spec = load_user_task(write_user_tasks(tmp_path)[0])
    result = run_task(spec, trained, options)
    assert {k: result["metrics"][k] for k in ("acc", "acc_norm")} == {"acc": 1.0, "acc_norm": 1.0}
    assert result["counts"] == {"available": 4, "scored": 4}
    for record in result["records"]:
        wrong = [lp for i, lp in enumerate(record["logprobs"]) if i != record["gold"]]
        assert record["logprobs"][record["gold"]] > max(wrong)
    assert len(result["version"]["sha256"]) == 16


def test_exact_match_by_greedy_generation(trained, options, tmp_path):
    result = run_task(load_user_task(write_user_tasks(tmp_path)[1]), trained, options)
    assert [r["prediction"] for r in result["records"]] == [a for _, a, _ in FACTS]
    assert result["score"] == 1.0


def test_generation_with_kv_cache_equals_full_recompute(trained):
    prompts = [f"Question: {q}\nAnswer:" for q, _, _ in FACTS] + [ADD.prompt, "Question:"]
    cached = generate(trained.decoder, trained.tokenizer, prompts, GenerationConfig(max_new_tokens=12), trained.eos_id)
    full = generate(trained.decoder, trained.tokenizer, prompts,
                    GenerationConfig(max_new_tokens=12, use_cache=False), trained.eos_id)
    assert cached == full
    # The prompts' lengths differ: batched, they are left-padded. Without eos and with a budget of the
    # whole window, each row runs to its own end of the window, so rows leave the batch one by one.
    window = trained.decoder.cfg.max_seq_len
    for cfg, eos in ((GenerationConfig(max_new_tokens=12), trained.eos_id), (GenerationConfig(max_new_tokens=window), None)):
        batched = generate(trained.decoder, trained.tokenizer, prompts, cfg, eos)
        assert batched == [generate(trained.decoder, trained.tokenizer, [prompt], cfg, eos)[0] for prompt in prompts]
    stopped = generate(trained.decoder, trained.tokenizer, [ADD.prompt],
                       GenerationConfig(max_new_tokens=12, stop=("+",)), trained.eos_id)
    assert stopped == [[" a "]]


def test_batched_loglikelihood_equals_one_at_a_time(trained):
    pairs = [encode_pair(trained.tokenizer, f"Question: {q}\nAnswer:", f" {c}", trained.eos_id, 128)
             for q, _, options in FACTS for c in options]
    batched = score(trained.decoder, pairs, batch_size=5)
    single = [score(trained.decoder, [pair])[0] for pair in pairs]
    for a, b in zip(batched, single):
        assert a.tokens == b.tokens and a.greedy == b.greedy
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
    # against a direct computation from the full logits
    ids, n = pairs[1]
    logits = trained.decoder(torch.tensor([ids[:-1]])).log_softmax(-1)[0]
    direct = sum(logits[len(ids) - 1 - n + i, ids[len(ids) - n + i]].item() for i in range(n))
    assert single[1].logprob == pytest.approx(direct, abs=1e-4)
    assert single[1].greedy  # "blue" was taught


def test_code_pass_at_k_runs_model_completions_in_the_sandbox(trained, options):
    unseen = CodeProblem("mul", "def mul(a, b):\n    return", "assert mul(2, 3) == 6", " a * b\n")
    spec = TaskSpec("toy_code", "code", "code", lambda: TaskData([ADD, SUB, unseen], {"sha256": "-"}),
                    stop=("\ndef ",), max_new_tokens=16)
    greedy = run_task(spec, trained, options)
    assert [r["correct"] for r in greedy["records"]] == [1, 1, 0]
    assert greedy["score"] == pytest.approx(2 / 3)
    sampled = run_task(spec, trained, EvalOptions(code_samples=4, code_temperature=0.8, pass_ks=(1, 4),
                                                  sandbox=options.sandbox))
    record = sampled["records"][0]
    assert len(record["completions"]) == 4 and record["pass@1"] == record["correct"] / 4
    assert sampled["metrics"]["pass@4"] >= sampled["metrics"]["pass@1"]


def test_pass_at_k_is_the_unbiased_estimator():
    for n, c, k in [(5, 0, 1), (5, 5, 3), (10, 3, 1), (10, 3, 5), (7, 2, 7)]:
        samples = range(n)
        subsets = list(combinations(samples, k))
        exact = sum(any(s < c for s in subset) for subset in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(exact)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 5)


def test_exact_match_normalises_case_punctuation_and_articles():
    assert normalize_answer("  The Sunset  Blvd. ") == "sunset blvd"
    assert exact_match("the Eiffel tower!", ("Tour Eiffel", "Eiffel Tower"))
    assert not exact_match("Eiffel", ("Eiffel Tower",))
    assert cut_at_stop("a, b\nc", ("\n", ",")) == ("a", True)


def test_aggregate_follows_the_study_and_names_what_is_missing():
    scores = {"boolq": ("reasoning", 0.6), "piqa": ("reasoning", 0.8), "triviaqa": ("knowledge", 0.1),
              "nq_open": ("knowledge", 0.3), "humaneval": ("code", 0.0), "mbpp": ("code", 0.1),
              "mmlu": ("extra", 0.9)}
    result = aggregate(scores)
    assert result["reasoning"]["score"] == pytest.approx(0.7)
    assert {"storycloze", "quac", "hellaswag"} <= set(result["reasoning"]["missing"])
    assert result["knowledge"] == {"score": pytest.approx(0.2), "tasks": ["nq_open", "triviaqa"], "missing": []}
    assert result["nl_avg"]["score"] == pytest.approx(0.45)
    assert result["total_avg"]["score"] == pytest.approx((0.7 + 0.2 + 0.05) / 3)
    assert aggregate({"boolq": ("reasoning", 0.5)})["total_avg"]["score"] is None
    assert not math.isnan(result["code"]["score"])
