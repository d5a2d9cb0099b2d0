"""The lm-evaluation-harness model "codemix": lm_eval run offline on a local-file task built from a
shipped benchmark gives codemix's own evaluation's numbers; rolling log-likelihood and generation
agree with plain full-sequence computations on the decoder. The same checkpoint exported for
transformers runs through lm_eval's own `hf` model (which needs accelerate) and scores what the
decoder scores."""

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is the optional 'harness' extra")

from lm_eval.api.instance import Instance  # noqa: E402

from codemix.eval.runner import EvalOptions, Model, run_task  # noqa: E402
from codemix.export.hf import export_hf  # noqa: E402
from codemix.eval.tasks.registry import TASKS  # noqa: E402
from codemix.lm_eval_adapter import CodemixLM  # noqa: E402
from test_export import tiny_checkpoint  # noqa: E402

LIMIT = 40  # COPA documents scored by both (80 log-likelihood requests)
TASK_YAML = """\
task: codemix_copa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def checkpoint(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lm_eval") / "checkpoint"
    # Untied: a tied random decoder's argmax mostly repeats the current token whatever came before.
    tiny_checkpoint(small_corpus / "tokenizer.json", path, block="parallel", norm="layernorm", tie_embeddings=False)
    return path


@pytest.fixture(scope="module")
def adapter(checkpoint: Path) -> CodemixLM:
    return CodemixLM(checkpoint=str(checkpoint), device="cpu", batch_size=8)


def write_copa_task(folder: Path) -> Path:
    """codemix's COPA instances (its prompts and answer continuations) as a json-file lm_eval task."""
    folder.mkdir()
    with open(folder / "copa.jsonl", "w") as out:
        for inst in TASKS["copa"].load().instances:
            assert len(set(inst.contexts)) == 1  # COPA scores every answer after the same context
            out.write(json.dumps({"context": inst.contexts[0], "choices": list(inst.continuations), "gold": inst.gold}) + "\n")
    (folder / "codemix_copa.yaml").write_text(TASK_YAML.format(data=folder / "copa.jsonl"))
    return folder


def run_lm_eval(module: str, model: str, model_args: str, tmp_path: Path) -> tuple[dict, list[dict]]:
    """`python -m MODULE --model MODEL` offline on the local COPA task: its results and its samples
    in document order."""
    tasks, out = write_copa_task(tmp_path / "tasks"), tmp_path / "out"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", module, "--model", model, "--model_args", model_args, "--device", "cpu",
         "--tasks", "codemix_copa", "--include_path", str(tasks), "--limit", str(LIMIT),
         "--output_path", str(out), "--log_samples"],
        capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["codemix_copa"]
    samples = [json.loads(line) for line in next(out.rglob("samples_codemix_copa_*.jsonl")).read_text().splitlines()]
    return results, sorted(samples, key=lambda s: s["doc_id"])


def test_lm_eval_accuracy_equals_codemix_evaluation(adapter, checkpoint, tmp_path):
    ours = run_task(TASKS["copa"], Model(adapter.model, adapter.tokenizer, adapter.eos_id), EvalOptions(limit=LIMIT))

    results, samples = run_lm_eval("codemix.lm_eval_adapter", "codemix", f"checkpoint={checkpoint}", tmp_path)
    assert results["sample_len"] == LIMIT
    assert results["acc,none"] == pytest.approx(ours["metrics"]["acc"], abs=1e-9)
    for sample, record in zip(samples, ours["records"], strict=True):
        prompts = [(a["arg_0"], a["arg_1"]) for a in sample["arguments"].values()]
        assert prompts == [(record["prompt"], choice) for choice in record["choices"]]  # same prompts
        harness_logprobs = [float(resp[0]) for resp in sample["filtered_resps"]]
        assert harness_logprobs == pytest.approx(record["logprobs"], abs=1e-4)


@pytest.mark.slow
@torch.inference_mode()
def test_exported_folder_runs_through_lm_eval_hf_model(adapter, checkpoint, tmp_path):
    """`lm_eval --model hf --model_args pretrained=EXPORT`: each answer's log-likelihood is the
    decoder's over the tokens lm_eval scores (the whole text encoded, the context's tokens cut off;
    lm_eval's hf model adds no eos prefix, unlike codemix's own scoring)."""
    export_hf(checkpoint, tmp_path / "export")
    results, samples = run_lm_eval("lm_eval", "hf", f"pretrained={tmp_path / 'export'},dtype=float32", tmp_path)
    assert results["sample_len"] == LIMIT

    def encode(text: str) -> list[int]:
        return adapter.tokenizer.encode(text, add_special_tokens=False).ids

    correct = 0
    for sample in samples:
        expected = []
        for argument in sample["arguments"].values():
            context, continuation = argument["arg_0"], argument["arg_1"]
            spaces = len(context) - len(context.rstrip())  # lm_eval moves the context's trailing spaces
            context, continuation = context[:len(context) - spaces], context[len(context) - spaces:] + continuation
            whole = encode(context + continuation)
            expected.append(_logprob_of_tail(adapter.model, whole, len(whole) - len(encode(context))))
        assert [float(resp[0]) for resp in sample["filtered_resps"]] == pytest.approx(expected, abs=1e-4)
        correct += max(range(len(expected)), key=expected.__getitem__) == int(sample["target"])
    assert results["acc,none"] == pytest.approx(correct / LIMIT, abs=1e-9)


def test_installed_codemix_declares_the_lm_eval_model_entry_point():
    """What lm_eval releases with plugin discovery read to resolve `--model codemix`."""
    entry = {ep.name: ep for ep in entry_points(group="lm_eval.models")}.get("codemix")
    assert entry is not None, "pyproject.toml lacks [project.entry-points.\"lm_eval.models\"] codemix = ..."
    assert entry.load() is CodemixLM


def _logprob_of_tail(model, ids: list[int], n: int) -> float:
    """log P(last n tokens | the ones before), from one plain forward over the whole sequence."""
    logits = model(torch.tensor([ids[:-1]]))[0].float()
    return float(F.log_softmax(logits, -1)[-n:].gather(1, torch.tensor(ids[-n:])[:, None]).sum())


@torch.inference_mode()
def test_rolling_loglikelihood_scores_every_token_once(adapter):
    short = "The cat sat on the mat."
    long = "def add(a, b):\n    return a + b\n" * 40  # longer than max_seq_len: several windows
    ids = adapter.tokenizer.encode(long, add_special_tokens=False).ids
    max_len = adapter.cfg.max_seq_len
    assert len(ids) > 2 * max_len
    # Reference: the first max_len tokens after eos, then each next chunk with the max_len tokens before it.
    expected_long = _logprob_of_tail(adapter.model, [adapter.eos_id] + ids[:max_len], max_len)
    for end in range(max_len, len(ids), max_len):
        chunk = min(max_len, len(ids) - end)
        expected_long += _logprob_of_tail(adapter.model, ids[end + chunk - max_len - 1:end + chunk], chunk)
    short_ids = adapter.tokenizer.encode(short, add_special_tokens=False).ids
    expected_short = _logprob_of_tail(adapter.model, [adapter.eos_id] + short_ids, len(short_ids))

    requests = [Instance("loglikelihood_rolling", {}, (text,), i) for i, text in enumerate([short, long])]
    got = adapter.loglikelihood_rolling(requests)
    assert got == pytest.approx([expected_short, expected_long], rel=1e-5)


@torch.inference_mode()
def test_generate_until_is_greedy_and_stops_at_until(adapter):
    def greedy(prompt: str, steps: int) -> str:  # no cache: the whole sequence again at each step
        ids = [adapter.eos_id] + adapter.tokenizer.encode(prompt, add_special_tokens=False).ids  # as in training
        new: list[int] = []
        for _ in range(steps):
            token = int(adapter.model(torch.tensor([ids + new]))[0, -1].argmax())
            if token == adapter.eos_id:
                break
            new.append(token)
        return adapter.tokenizer.decode(new)

    prompts = ["def add(a, b):\n", "The cat"]
    full = [greedy(p, 12) for p in prompts]
    middle = len(full[1]) // 2
    stop = full[1][middle:middle + 2]
    cut = full[1][:full[1].find(stop)]
    assert 0 < len(cut) < len(full[1])
    requests = [
        Instance("generate_until", {}, (prompts[0], {"until": [], "max_gen_toks": 12}), 0),
        Instance("generate_until", {}, (prompts[1], {"until": [stop], "max_gen_toks": 12}), 1),
    ]
    assert adapter.generate_until(requests) == [full[0], cut]
