"""MixtureDataModule on real MDS shards and a real StreamingDataset: exact budgets, source labels,
determinism, resume in a new process, two ranks, loader workers."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from mixture_fixtures import SEQ_LEN, RecordingLM, SourceSpec, stage_datamodule, stream_stage, write_corpus

from codemix.data.datamodule import WORLD_ENV, MixtureDataModule
from codemix.data.validation import evenly_spaced
from codemix.errors import ConfigError

TESTS_DIR = Path(__file__).parent
GLOBAL_BATCH = 16
MICRO_BATCH = 4
STEPS = 10
STAGE = {
    "mixture": {"code": 0.5, "text": 0.3, "markup": 0.2},
    "tokens": SEQ_LEN * GLOBAL_BATCH * STEPS,
    "seq_len": SEQ_LEN,
    "global_batch": GLOBAL_BATCH,
    "micro_batch": MICRO_BATCH,
    "seed": 11,
}
PLANNED_SAMPLES = [50, 30, 48, 32]  # py, go (code 0.5 by train tokens 100:60), kjv 0.3, docs 0.2 of 160


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(
        tmp_path_factory.mktemp("datamodule") / "corpus",
        [
            SourceSpec("py", "code", 100),
            SourceSpec("go", "code", 60),
            SourceSpec("kjv", "text", 200, val_samples=90),
            SourceSpec("docs", "markup", 50, val_samples=0),
        ],
    )


def run(corpus: Path, **overrides) -> dict:
    return stream_stage({"corpus": str(corpus), "stage": {**STAGE, **overrides}})


def run_in_process(tmp_path: Path, name: str, spec: dict, env: dict | None = None) -> subprocess.Popen:
    """Start the fixture script in its own Python process; `finish` waits and reads its result."""
    spec_path, out_path = tmp_path / f"{name}.spec.json", tmp_path / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    return subprocess.Popen(
        [sys.executable, str(TESTS_DIR / "mixture_fixtures.py"), str(spec_path), str(out_path)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a hung run is ended with all it launched
    )


def wait_for(process: subprocess.Popen, timeout: int = 150) -> None:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"no result in {timeout} s:\n{output}")
    assert process.returncode == 0, output


def finish(process: subprocess.Popen, tmp_path: Path, name: str) -> dict:
    wait_for(process)
    return json.loads((tmp_path / f"{name}.out.json").read_text())


def as_keys(samples: list[list[int]]) -> list[tuple[int, ...]]:
    return [tuple(s) for s in samples]


def test_stage_yields_exactly_its_budget_by_source(corpus):
    result = run(corpus)
    samples = result["samples"]
    assert len(samples) == GLOBAL_BATCH * STEPS
    assert result["batches"] == GLOBAL_BATCH * STEPS // MICRO_BATCH
    assert result["accumulate"] == GLOBAL_BATCH // MICRO_BATCH
    # every label is the source the sample's content came from, all from train splits
    assert all(label == source and split == 0 for label, source, split, _ in samples)
    per_source = Counter(label for label, *_ in samples)
    assert [per_source[i] for i in range(4)] == PLANNED_SAMPLES
    # under one pass, no sample is repeated
    assert len(set(as_keys(samples))) == len(samples)


def test_batches_are_long_tensors_of_seq_len(corpus):
    module = stage_datamodule(corpus, **STAGE)
    batch = next(iter(module.train_dataloader()))
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == (MICRO_BATCH, SEQ_LEN)
    assert batch["source_id"].dtype == torch.long and batch["source_id"].shape == (MICRO_BATCH,)
    assert module.source_names == ["py", "go", "kjv", "docs"]
    assert module.source_kinds == ["code", "code", "text", "markup"]


def test_same_seed_same_batches_other_seed_other_batches(corpus):
    first, again, other = run(corpus), run(corpus), run(corpus, seed=12)
    assert first["samples"] == again["samples"]
    assert other["samples"] != first["samples"]
    assert Counter(label for label, *_ in other["samples"]) == Counter(label for label, *_ in first["samples"])


def test_repetition_beyond_one_pass_when_allowed(corpus):
    result = run(corpus, mixture={"docs": 0.5, "kjv": 0.5}, max_passes=1.6)
    docs = [key for key in as_keys(result["samples"]) if key[0] == 3]
    assert len(docs) == 80 and len(set(docs)) == 50  # every docs sample once, 30 of them twice
    with pytest.raises(ConfigError, match="'docs' is too small.*1.60 passes"):
        stage_datamodule(corpus, **{**STAGE, "mixture": {"docs": 0.5, "kjv": 0.5}})


def test_val_loaders_one_per_source_with_val_samples(corpus):
    module = stage_datamodule(corpus, **STAGE, val_samples_per_source=64)
    loaders = module.val_dataloader()
    assert module.val_source_ids == [0, 1, 2]  # docs has no val samples
    seen = [[row[:3].tolist() for batch in loader for row in batch["input_ids"]] for loader in loaders]
    assert [len(rows) for rows in seen] == [4, 4, 64]
    assert all(source == sid and split == 1 for sid, rows in zip([0, 1, 2], seen) for source, split, _ in rows)
    # evenly spaced over kjv's 90 val samples, the selection eval's held-out loss scores too
    assert [index for _, _, index in seen[2]] == evenly_spaced(90, 64) != list(range(64))
    again = [[row[:3].tolist() for batch in loader for row in batch["input_ids"]] for loader in module.val_dataloader()]
    assert again == seen


def test_micro_batch_and_world_size_must_divide_the_global_batch(corpus, monkeypatch):
    """The recipe's own split is checked when it loads (test_recipe); here a launch on another world size."""
    with pytest.raises(ConfigError, match="global_batch 16 is not a multiple of micro_batch 5 x world size 1"):
        stage_datamodule(corpus, **{**STAGE, "micro_batch": 5}).accumulate_grad_batches
    module = stage_datamodule(corpus, **{**STAGE, "micro_batch": 8})
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="micro_batch 8 x world size 4"):
        module.accumulate_grad_batches


@pytest.mark.parametrize("change", [{"seed": 12}, {"mixture": {"kjv": 1.0}}])
def test_saved_position_of_another_stage_is_refused(corpus, change):
    state = run(corpus)["state"]
    module = stage_datamodule(corpus, **{**STAGE, **change})
    module.load_state_dict(state)
    with pytest.raises(ConfigError, match=f"belongs to stage {state['stage']}, not to this stage"):
        module.train_dataloader()


def test_resume_in_a_new_process_yields_exactly_the_rest(corpus, tmp_path):
    full = run(corpus)
    first = stream_stage({"corpus": str(corpus), "stage": STAGE, "take": 13})
    assert first["samples"] == full["samples"][: 13 * MICRO_BATCH]
    assert first["state"]["streaming"]["sample_in_epoch"] == 13 * MICRO_BATCH
    (tmp_path / "state.json").write_text(json.dumps(first["state"]))
    # the new process reads with loader workers: the position does not depend on them
    spec = {"corpus": str(corpus), "stage": {**STAGE, "num_workers": 2}, "state_in": str(tmp_path / "state.json")}
    rest = finish(run_in_process(tmp_path, "rest", spec), tmp_path, "rest")
    assert rest["samples"] == full["samples"][13 * MICRO_BATCH :]


def test_position_saved_before_the_first_batch_restarts_the_stage(corpus):
    full = run(corpus, seed=0)
    unstarted = stage_datamodule(corpus, **{**STAGE, "seed": 0})
    unstarted.train_dataloader()
    state = unstarted.state_dict()
    module = stage_datamodule(corpus, **{**STAGE, "seed": 0})
    module.load_state_dict(state)
    samples = [row[:3].tolist() for batch in module.train_dataloader() for row in batch["input_ids"]]
    assert samples == [key[1:] for key in full["samples"]]


def test_resume_at_the_end_of_the_stage_yields_nothing(corpus, tmp_path):
    full = run(corpus)
    (tmp_path / "state.json").write_text(json.dumps(full["state"]))
    rest = stream_stage({"corpus": str(corpus), "stage": STAGE, "state_in": str(tmp_path / "state.json")})
    assert full["samples"] and rest["samples"] == []


def _rank_env(rank: int, port: int) -> dict:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_resume_a_one_rank_position_on_disjoint_halves(corpus, tmp_path):
    """Two processes with streaming's rank variables (as torchrun sets them) take over a stage saved
    by one rank: each gets every other remaining sample."""
    full = run(corpus)["samples"]
    taken = 10 * MICRO_BATCH
    first = stream_stage({"corpus": str(corpus), "stage": STAGE, "take": 10})
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(first["state"]))
    spec, port = {"corpus": str(corpus), "stage": STAGE, "state_in": str(state_path)}, _free_port()
    processes = [run_in_process(tmp_path, f"rank{rank}", spec, _rank_env(rank, port)) for rank in range(2)]
    ranks = [finish(process, tmp_path, f"rank{rank}") for rank, process in enumerate(processes)]
    assert [r["accumulate"] for r in ranks] == [GLOBAL_BATCH // (MICRO_BATCH * 2)] * 2
    assert [r["samples"] for r in ranks] == [full[taken::2], full[taken + 1 :: 2]]


def test_loader_workers_give_the_same_sequence(corpus):
    assert run(corpus, num_workers=2)["samples"] == run(corpus)["samples"]


def _trainer(module: MixtureDataModule, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        accumulate_grad_batches=module.accumulate_grad_batches,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_lightning_trainer_consumes_the_stage_and_resumes_it_from_a_checkpoint(corpus, tmp_path):
    full = run(corpus)["samples"]
    world_env = {key: os.environ.get(key) for key in WORLD_ENV}
    first_data, first_model = stage_datamodule(corpus, **STAGE), RecordingLM()
    every_4_steps = ModelCheckpoint(dirpath=tmp_path, filename="mid", every_n_train_steps=4, save_top_k=1)
    trainer = _trainer(first_data, callbacks=[every_4_steps], max_steps=4)
    trainer.fit(first_model, datamodule=first_data)
    taken = 4 * GLOBAL_BATCH
    assert first_model.seen == full[:taken]
    assert {key: os.environ.get(key) for key in WORLD_ENV} == world_env  # nothing leaks to later Trainers

    rest_data, rest_model = stage_datamodule(corpus, **STAGE), RecordingLM()
    trainer = _trainer(rest_data, enable_checkpointing=False)
    trainer.fit(rest_model, datamodule=rest_data, ckpt_path=tmp_path / "mid.ckpt")
    assert trainer.global_step == STEPS  # the stage ends at its budget, with gradient accumulation
    assert rest_model.seen == full[taken:]


def test_loader_benchmark_measures_the_whole_stage(corpus, monkeypatch):
    path = TESTS_DIR.parent / "benchmarks" / "loader_throughput.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as when it runs as a script: its bench_corpus import
    spec = importlib.util.spec_from_file_location("loader_throughput", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    report = benchmark.measure_loader(corpus, micro_batch=4, workers=(0,), with_training_reference=False)
    (row,) = report["loader"]
    assert row["tokens"] == report["stage_tokens"] > 0 and row["tokens_per_s"] > 0


def test_lightning_ddp_ranks_train_on_disjoint_halves_of_the_stage(corpus, tmp_path):
    """Lightning's own ddp launcher sets no RANK/LOCAL_WORLD_SIZE; the module exports them for streaming."""
    full = run(corpus)["samples"]
    trainer = {"devices": 2, "strategy": "ddp", "accumulate_grad_batches": 2}
    spec = {"corpus": str(corpus), "stage": STAGE, "trainer": trainer}
    wait_for(run_in_process(tmp_path, "ddp", spec))
    ranks = [json.loads((tmp_path / f"ddp.out.json.rank{rank}").read_text()) for rank in range(2)]
    assert [r["global_step"] for r in ranks] == [STEPS, STEPS]
    assert [r["samples"] for r in ranks] == [full[0::2], full[1::2]]
    drawn = Counter(label for rank in ranks for label, *_ in rank["samples"])
    assert [drawn[i] for i in range(4)] == PLANNED_SAMPLES
