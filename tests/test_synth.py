"""`codemix data synth`: solutions from real generators (a loopback chat-completions server, a random
codemix checkpoint and its transformers export) verified in the real sandbox; only verified ones are
written. The shipped problems' own references pass their tests, and stubs fail them."""

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest
from chat_server import chat_server
from test_export import tiny_checkpoint

from codemix.config.data_spec import load_data_spec
from codemix.data.sources import ReadStats, read_source
from codemix.data.tokenizer import save_tokenizer, train_bpe
from codemix.errors import CodemixError, ConfigError
from codemix.sandbox import Sandbox
from codemix.synth.cli import add_actions
from codemix.synth.generators import COMPLETION_STOP
from codemix.synth.pipeline import add_synthetic_source, summary_path
from codemix.synth.problems import SHIPPED_PROBLEMS, Problem, load_problems
from codemix.synth.verify import verify

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {p.entry_point: p for p in load_problems(SHIPPED_PROBLEMS)}
WRONG = "def run_lengths(text):\n    return [(ch, 1) for ch in text]\n"
EARLY_EXIT = "def gcd_all(numbers):\n    return 0\n\nimport os\nos._exit(0)\n"
EQUALS_EVERYTHING = ("class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
                     "def url_slug(title):\n    return Anything()\n")
SPINS = "def flatten(nested):\n    while True:\n        pass\n"
FLOODS = "print('x' * 3_000_000)\n\n\ndef missing_shards(names):\n    return []\n"


TRICKS = {"pack_documents", "batched", "competition_rank", "run_lengths", "gcd_all", "url_slug", "flatten",
          "missing_shards", "sparse_dot"}  # the problems the teacher answers wrongly, oddly or hostilely


def fenced(code: str) -> str:
    return f"Here is the function.\n\n```python\n{code}```\n\nIt handles the edge cases."


def chat_reply(entry_point: str, seed: int) -> str:
    """What the loopback "teacher" answers: right, wrong or hostile for the TRICKS, right for the rest."""
    reference = SHIPPED[entry_point].reference
    if entry_point not in TRICKS:
        return fenced(reference)
    return {
        "pack_documents": fenced(reference),
        "batched": reference,  # bare code, no fence
        "competition_rank": fenced(reference if seed % 2 == 0 else "def competition_rank(scores):\n    return []\n"),
        "run_lengths": fenced(WRONG),
        "gcd_all": fenced(EARLY_EXIT),
        "url_slug": fenced(EQUALS_EVERYTHING),
        "flatten": fenced(SPINS),
        "missing_shards": fenced(FLOODS),
        "sparse_dot": "I would rather not write that.",
    }[entry_point]


def teacher_reply(body: dict) -> str:
    entry_point = re.search(r"def (\w+)\(", body["messages"][-1]["content"]).group(1)
    return chat_reply(entry_point, body["seed"])


@pytest.fixture(scope="module")
def teacher():
    with chat_server(teacher_reply) as server:
        yield server


@pytest.fixture(scope="module")
def teacher_url(teacher):
    return teacher.url


def write_problems(path: Path, entry_points: list[str]) -> Path:
    rows = [{f: getattr(SHIPPED[e], f) for f in ("statement", "signature", "entry_point", "tests", "reference")}
            | {"id": e} for e in entry_points]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def synth(problems: Path, generator: str, out: Path, *options: str) -> int:
    parser = argparse.ArgumentParser(prog="codemix data")
    add_actions(parser.add_subparsers())
    args = parser.parse_args(["synth", str(problems), "--generator", generator, "--out", str(out), *options])
    return args.func(args)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_shipped_reference_passes_its_tests_and_a_stub_fails_them():
    problems = load_problems(SHIPPED_PROBLEMS)
    assert len(problems) >= 40 and all(p.reference for p in problems)
    stubs = [p.signature + "\n    return None\n" for p in problems]
    verdicts = verify(problems, [[p.reference, stub] for p, stub in zip(problems, stubs)], Sandbox(workers=2))
    assert [p.id for p, (ref, _) in zip(problems, verdicts) if not ref.verified] == []
    assert [p.id for p, (_, stub) in zip(problems, verdicts) if stub.verified] == []


def test_shipped_problems_are_not_taken_from_the_evaluation_sets():
    from codemix.eval.tasks.code import load_humaneval, load_mbpp

    def runs_of_words(text: str, n: int = 8) -> set[tuple[str, ...]]:
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    evaluation = load_humaneval().instances + load_mbpp().instances
    eval_runs = set().union(*(runs_of_words(i.prompt) for i in evaluation))
    eval_functions = {name for i in evaluation for name in re.findall(r"def (\w+)\(", i.prompt + i.reference)}
    assert [p.id for p in SHIPPED.values() if runs_of_words(p.statement) & eval_runs] == []
    assert [p.entry_point for p in SHIPPED.values() if p.entry_point in eval_functions] == []


def test_only_verified_chat_solutions_are_kept(teacher, teacher_url, tmp_path, monkeypatch, capsys):
    entry_points = ["pack_documents", "batched", "competition_rank", "run_lengths", "gcd_all", "url_slug",
                    "flatten", "missing_shards", "sparse_dot"]
    problems = write_problems(tmp_path / "problems.jsonl", entry_points)
    out = tmp_path / "synth" / "synth.jsonl"
    monkeypatch.setenv("CODEMIX_SYNTH_API_KEY", "sk-test")
    teacher.requests.clear()
    code = synth(problems, f"openai:{teacher_url}#teacher", out, "--samples", "2", "--temperature", "0.8",
                 "--timeout", "2", "--max-new-tokens", "300", "--attempts", str(tmp_path / "attempts.jsonl"))
    assert code == 0

    summary = json.loads(summary_path(out).read_text())
    assert (summary["attempted"], summary["verified"], summary["written"]) == (18, 5, 3)
    assert summary["rate"] == pytest.approx(5 / 18) and summary["duplicates_dropped"] == 2
    assert summary["statuses"] == {"passed": 5, "failed": 7, "exited_early": 2, "timeout": 2, "output_limit": 2}
    assert summary["problems_solved"] == 3
    assert {k: v for k, v in summary["per_problem"].items() if v} == {"pack_documents": 2, "batched": 2,
                                                                      "competition_rank": 1}
    assert "5 of 18 solutions verified (27.8%), 3 of 9 problems solved" in capsys.readouterr().out

    rows = read_jsonl(out)
    assert [(r["problem_id"], r["sample"]) for r in rows] == [("pack_documents", 0), ("batched", 0),
                                                              ("competition_rank", 0)]
    for row in rows:
        problem = SHIPPED[row["problem_id"]]
        assert row["text"] == problem.text(problem.reference)
        assert row["text"].startswith('"""\n') and problem.statement.split()[0] in row["text"]
        assert row["generator"] == f"openai:{teacher_url}#teacher" and row["verification"]["status"] == "passed"
        provenance = row["provenance"]
        assert provenance["generator"] == {"type": "openai", "spec": row["generator"],
                                           "endpoint": teacher_url + "/chat/completions", "model": "teacher"}
        assert provenance["problems"] == str(problems.resolve()) and len(provenance["problems_sha256"]) == 64
        assert provenance["sampling"]["temperature"] == 0.8 and provenance["sandbox"]["limits"]["wall_s"] == 2
    attempts = read_jsonl(tmp_path / "attempts.jsonl")
    slug = [a["verification"] for a in attempts if a["problem_id"] == "url_slug"]
    assert len(attempts) == 18 and [v["status"] for v in slug] == ["failed", "failed"]
    assert "returned Anything, not plain data" in slug[0]["stderr"]

    sent = teacher.requests
    assert len(sent) == 18 and {r["auth"] for r in sent} == {"Bearer sk-test"}
    asked = [r["body"] for r in sent if SHIPPED["pack_documents"].signature in r["body"]["messages"][-1]["content"]]
    assert sorted(body["seed"] for body in asked) == [0, 1]
    body = asked[0]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("teacher", 0.8, 300)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert SHIPPED["pack_documents"].statement in body["messages"][1]["content"]

    # The output is a source a data YAML reads with reader type jsonl and kind `synthetic`.
    spec_path = tmp_path / "data.yaml"
    spec_path.write_text("name: with-synth\nsources:\n  - name: synth_python\n    kind: synthetic\n"
                         "    licence: test\n    reader: {type: jsonl, path: synth/synth.jsonl}\n")
    source = load_data_spec(spec_path).sources[0]
    assert [d.text for d in read_source(source, ReadStats())] == [r["text"] for r in rows]


def test_random_codemix_checkpoint_and_its_transformers_export_as_generators(tmp_path):
    import torch

    from codemix.eval.generation import GenerationConfig, generate
    from codemix.eval.harness import load_model
    from codemix.eval.results import resolve_target
    from codemix.export.hf import export_hf

    problems = write_problems(tmp_path / "problems.jsonl", ["batched", "run_lengths", "gcd_all"])
    loaded = load_problems(problems)
    tokenizer = train_bpe([p.text(p.reference) for p in SHIPPED.values()], vocab_size=400, min_frequency=2)
    save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    tiny_checkpoint(tmp_path / "tokenizer.json", tmp_path / "checkpoint")
    export_hf(tmp_path / "checkpoint", tmp_path / "hf")

    options = ("--samples", "2", "--temperature", "1.0", "--max-new-tokens", "12", "--seed", "3")
    for kind in ("codemix", "hf"):
        out, attempts = tmp_path / kind / "out.jsonl", tmp_path / kind / "attempts.jsonl"
        assert synth(problems, f"{kind}:{tmp_path / kind if kind == 'hf' else tmp_path / 'checkpoint'}", out,
                     *options, "--attempts", str(attempts)) == 0
        summary, rows, tried = json.loads(summary_path(out).read_text()), read_jsonl(out), read_jsonl(attempts)
        assert summary["attempted"] == len(tried) == 6
        assert summary["verified"] == sum(a["verification"]["status"] == "passed" for a in tried)
        assert sum(summary["statuses"].values()) == 6 and len(rows) == summary["written"] <= summary["verified"]
        assert [(a["problem_id"], a["sample"]) for a in tried] == [(p.id, s) for p in loaded for s in (0, 1)]
        for attempt, problem in zip(tried, [p for p in loaded for _ in (0, 1)]):
            assert attempt["text"].startswith(problem.completion_prompt())
        assert summary["provenance"]["generator"]["type"] == kind

    # The codemix generator samples exactly what codemix's own generation gives for the prompts.
    model = load_model(resolve_target(tmp_path / "checkpoint"))
    torch.manual_seed(0)
    expected = generate(model.decoder, model.tokenizer, [p.completion_prompt() for p in loaded],
                        GenerationConfig(max_new_tokens=12, stop=COMPLETION_STOP, temperature=1.0, samples=2, seed=3),
                        model.eos_id)
    tried = read_jsonl(tmp_path / "codemix" / "attempts.jsonl")
    assert [a["text"] for a in tried] == [p.text(p.signature + "\n" + c) for p, cs in zip(loaded, expected) for c in cs]


def test_bad_input_is_refused_naming_it(teacher_url, tmp_path):
    problems = write_problems(tmp_path / "problems.jsonl", ["batched"])
    out = tmp_path / "out.jsonl"
    for spec in ("gpt4", "openai:http://x/v1", "hf:", "local:/x"):
        with pytest.raises(ConfigError, match=re.escape(spec)):
            synth(problems, spec, out)
    with pytest.raises(ConfigError, match="no config.json"):
        synth(problems, f"hf:{tmp_path}", out)
    with pytest.raises(ConfigError, match="--temperature"):
        synth(problems, f"openai:{teacher_url}#t", out, "--samples", "2")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"id": "x", "statement": "s", "signature": "def f(x):", "entry_point": "g",
                                  "tests": "assert g(1)"}) + "\n")
    with pytest.raises(ConfigError, match=f"{re.escape(str(broken))}:1: signature"):
        synth(broken, f"openai:{teacher_url}#t", out)
    broken.write_text('{"id": "x", "statement": "s"}\n')
    with pytest.raises(ConfigError, match=r":1: needs non-empty string fields signature, entry_point, tests"):
        synth(broken, f"openai:{teacher_url}#t", out)
    with pytest.raises(CodemixError, match=r"problem 'batched': generator \S*/nowhere/chat/completions \(model 't'\)"):
        synth(problems, f"openai:{teacher_url.replace('/v1', '/nowhere')}/chat/completions#t", out)
    assert not out.exists() and not summary_path(out).exists()


def test_problem_text_keeps_the_statement_as_a_wrapped_docstring():
    problem = Problem("p", "First paragraph " * 12 + "\n\nSecond.", "def f(x):", "f", "assert f(1) == 1")
    text = problem.text("def f(x):\n    return x\n\n")
    assert text.startswith('"""\nFirst paragraph First')
    assert text.endswith('paragraph\n\nSecond.\n"""\n\n\ndef f(x):\n    return x\n')
    assert max(map(len, text.splitlines())) <= 88 and len(text.splitlines()) == 11


def test_synth_adds_a_synthetic_source_that_the_tiny_synthetic_arms_train_on(teacher, teacher_url,
                                                                            smoke_reproduction, tmp_path, capsys):
    """`codemix data synth --add-to` (add_synthetic_source, which `codemix reproduce --synth-generator`
    calls too): the verified solutions become a source of kind `synthetic` in the quickstart corpus,
    tokenized with its tokenizer, and the study then plans the synthetic arms (which it skips without
    one) with the source drawn."""
    from codemix.data.corpus import Corpus

    home = tmp_path / "home"
    shutil.copytree(smoke_reproduction.home / "corpora", home / "corpora")
    before = Corpus.open(home / "corpora" / "quickstart")
    out = home / "corpora" / "quickstart-synthetic.jsonl"
    generator = f"openai:{teacher_url}#teacher"
    assert synth(SHIPPED_PROBLEMS, generator, out, "--add-to", "quickstart", "--home", str(home)) == 0
    summary = json.loads(summary_path(out).read_text())
    assert summary["problems_solved"] == len(SHIPPED) - len(TRICKS) + 3  # + pack_documents, batched, competition_rank

    corpus = Corpus.open(home / "corpora" / "quickstart")
    assert corpus.tokenizer_hash == before.tokenizer_hash
    assert [(s.name, s.kind, s.id) for s in corpus.sources] == (
        [(s.name, s.kind, s.id) for s in before.sources] + [("synthetic_python", "synthetic", len(before.sources))])
    manifest = corpus.manifest("synthetic_python")
    assert manifest["documents"] == summary["written"] and manifest["tokenizer_hash"] == corpus.tokenizer_hash
    assert manifest["licence"].startswith(f"output of the generator {generator}")
    assert manifest["splits"]["train"]["samples"] > 0
    printed = capsys.readouterr().out
    assert "synthetic_python" in printed and f"added synthetic_python to {corpus.path}" in printed

    # A source the corpus cannot take is refused before the generator is asked anything.
    asked = len(teacher.requests)
    with pytest.raises(ConfigError, match="source name 'code' is also a kind there"):
        add_synthetic_source(corpus.path, generator, tmp_path / "again.jsonl", source_name="code")
    assert len(teacher.requests) == asked and not (tmp_path / "again.jsonl").exists()
    from codemix.study.driver import plan_study

    study = plan_study(REPO / "recipes" / "tiny", home, "test", lambda line: None)
    assert not study.skipped, study.skipped
    synthetic = [s for s in study.stages if "synthetic" in s.recipe.stages[s.name].mixture]
    assert {s.recipe.name for s in synthetic} == {"tiny-balanced-synth-to-text", "tiny-quality-synthetic",
                                                  "tiny-balanced-synth-to-text-cooldown-text"}
    for stage in synthetic:
        assert stage.data.sources[corpus.source("synthetic_python").id].samples > 0
    # Stages without synthetic code keep their identities: the smoke run's text-only stage is reused.
    smoke_ids = {entry.name for entry in smoke_reproduction.stage_index.iterdir()}
    assert smoke_ids & {s.identity for s in study.stages}
