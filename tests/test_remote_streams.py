"""A corpus in object storage: built locally, uploaded to a real S3-compatible server (moto's, on a
loopback socket), trained on from there: the weights equal those trained from the local corpus, with
the whole corpus cached and with a cache too small for it (streaming evicts shards as it goes).

Each training runs in a child process of its own (this file is its script) under a timeout: streaming's
download threads, shared memory and file locks end with that process, not in a later test's garbage
collection, and a loader that stops making progress fails the test, naming the run, instead of
stalling the suite. The S3 server lives in the test process, for as long as the test does."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import lightning as L
import pytest
import torch
from mixture_fixtures import SEQ_LEN, RecordingLM, SourceSpec, write_corpus

from codemix.data.corpus import Corpus, resolve_corpus
from codemix.data.datamodule import MixtureDataModule
from codemix.data.mixture import plan_data
from codemix.data.remote import StreamCache, stream_cache
from codemix.errors import ConfigError

STAGE = {"mixture": {"code": 0.6, "text": 0.4}, "tokens": SEQ_LEN * 8 * 6, "seq_len": SEQ_LEN, "global_batch": 8,
         "micro_batch": 4, "seed": 3}


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An S3 server on a loopback socket, and a home of the test's own (its remote corpus cache)."""
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("CODEMIX_HOME", str(tmp_path / "home"))

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    yield boto3.client("s3", endpoint_url=endpoint)
    server.stop()


TRAIN_TIMEOUT_S = 180  # one tiny stage in a fresh interpreter takes about 10 s on 2 busy cores
OUTPUT_TAIL = 50_000  # characters of a failed run's output in the failure: every thread's stack


def train(corpus: str, cache_limit: str | None = None, predownload: int | None = None) -> tuple[dict, list]:
    """Train the stage on `corpus` with the cache settings a recipe would give (codemix.plan calls
    stream_cache with the recipe's data.cache_limit and data.predownload); returns the weights and
    the samples each step received ([source_id, source id token, split, index])."""
    opened = Corpus.open(resolve_corpus(corpus))
    plan = plan_data(opened, STAGE["mixture"], STAGE["tokens"], STAGE["seq_len"], STAGE["global_batch"])
    cache = stream_cache(opened, [p.source.name for p in plan.drawn], cache_limit, predownload, "recipe.yaml")
    torch.manual_seed(0)
    model = RecordingLM()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, limit_val_batches=0)
    trainer.fit(model, datamodule=MixtureDataModule(plan, STAGE["micro_batch"], STAGE["seed"], cache=cache))
    return model.state_dict(), model.seen


def train_in_process(tmp_path: Path, name: str, corpus: str, cache_limit: str | None = None,
                     predownload: int | None = None) -> tuple[dict, list]:
    """`train` in a child process (this file as its script, with its own TMPDIR for streaming's locks)."""
    out = tmp_path / f"{name}.pt"
    (tmp_path / f"{name}-tmp").mkdir()
    settings = json.dumps({"cache_limit": cache_limit, "predownload": predownload})
    args = [sys.executable, __file__, corpus, str(out), settings]
    try:
        done = subprocess.run(args, env={**os.environ, "TMPDIR": str(tmp_path / f"{name}-tmp")}, capture_output=True,
                              text=True, timeout=TRAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"training {name} on {corpus} made no end in {TRAIN_TIMEOUT_S} s; its output ends:\n"
                    f"{(err.stderr or '')[-OUTPUT_TAIL:]}")
    assert done.returncode == 0, f"training {name} on {corpus} failed:\n{done.stderr[-OUTPUT_TAIL:]}"
    result = torch.load(out)
    return result["weights"], result["seen"]


@pytest.fixture(scope="module")
def local_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("local") / "corpus",
                        [SourceSpec("py", "code", 40), SourceSpec("kjv", "text", 60, val_samples=8)])


@pytest.fixture(scope="module")
def local_training(local_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list]:
    """The stage trained from the local corpus: what every remote training must equal."""
    return train_in_process(tmp_path_factory.mktemp("local-run"), "local", str(local_corpus))


def upload_corpus(corpus: Path, s3) -> Path:
    """Upload the corpus to s3://corpora/small; returns it."""
    s3.create_bucket(Bucket="corpora")
    for path in corpus.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "corpora", f"small/{path.relative_to(corpus).as_posix()}")
    return corpus


def train_shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/train/**/*.mds"))


@pytest.mark.slow
def test_a_stage_streamed_from_s3_trains_the_same_weights(tmp_path: Path, s3_server, local_corpus, local_training):
    corpus = upload_corpus(local_corpus, s3_server)
    local, local_seen = local_training
    remote, remote_seen = train_in_process(tmp_path, "remote", "s3://corpora/small")
    assert torch_equal(local, remote) and local_seen == remote_seen
    (cache,) = (Path(os.environ["CODEMIX_HOME"]) / "corpora" / ".remote").glob("small-*")
    assert train_shards(cache) and len(train_shards(cache)) == len(train_shards(corpus))  # all kept: they fit

    with pytest.raises(ConfigError, match="s3://corpora/nothing/corpus.json: cannot download"):
        resolve_corpus("s3://corpora/nothing")


@pytest.mark.slow
def test_a_cache_smaller_than_the_corpus_evicts_shards_and_trains_the_same_weights(tmp_path: Path, s3_server,
                                                                                   local_corpus, local_training):
    corpus = upload_corpus(local_corpus, s3_server)
    shards = {path.relative_to(corpus): path.stat().st_size for path in train_shards(corpus)}
    indexes = sum((corpus / name / "train" / "index.json").stat().st_size for name in ("py", "kjv"))
    limit = indexes + 4 * max(shards.values())  # the least streaming accepts: 4 of the largest shard
    assert limit < indexes + sum(shards.values())  # the whole corpus does not fit

    local, local_seen = local_training
    remote, remote_seen = train_in_process(tmp_path, "remote", "s3://corpora/small", str(limit), predownload=8)
    assert torch_equal(local, remote) and local_seen == remote_seen

    (cache,) = (Path(os.environ["CODEMIX_HOME"]) / "corpora" / ".remote").glob("small-*")
    kept = {path.relative_to(cache) for path in train_shards(cache)}
    read = shards_read(corpus, remote_seen)
    # streaming checks its limit before each download, not counting those in flight: the cache may pass
    # it by a shard or two, so the test asks for evictions, not for a cache within the limit
    assert kept < read, f"nothing evicted: {len(kept)} of the {len(read)} shards read are still cached"


def shards_read(corpus: Path, seen: list) -> set[Path]:
    """The training shards holding the samples a run saw (a sample's tokens name its source and index)."""
    names = ["py", "kjv"]
    read = set()
    for _, source_id, _, index in seen:
        start = 0
        for shard in json.loads((corpus / names[source_id] / "train" / "index.json").read_text())["shards"]:
            if start <= index < start + shard["samples"]:
                read.add(Path(names[source_id], "train", shard["raw_data"]["basename"]))
            start += shard["samples"]
    return read


def torch_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cache_settings_are_checked_before_any_training_shard_is_read(s3_server, local_corpus):
    corpus = upload_corpus(local_corpus, s3_server)
    remote = Corpus.open(resolve_corpus("s3://corpora/small"))
    assert not train_shards(remote.path)  # only indexes and val shards are fetched up front
    assert stream_cache(remote, ["py", "kjv"], None, None, "r.yaml") == StreamCache()  # it fits the disk: no limit
    assert stream_cache(remote, ["py"], "1mb", 16, "r.yaml") == StreamCache(1 << 20, 16)
    # a local corpus has no cache: a limit would make streaming delete its shards
    assert stream_cache(Corpus.open(corpus), ["py"], "1kb", None, "r.yaml") == StreamCache()
    for limit, message in [("lots", "data.cache_limit 'lots': not a size"), ("0", "data.cache_limit '0': not a size"),
                           ("1kb", "data.cache_limit '1kb' (1,024 bytes) cannot cache 4 of the largest training shard")]:
        with pytest.raises(ConfigError, match=f"^r.yaml: {re.escape(message)}"):
            stream_cache(remote, ["py", "kjv"], limit, None, "r.yaml")
    with pytest.raises(ConfigError, match="^r.yaml: data.predownload 0: must be at least 1 sample$"):
        stream_cache(remote, ["py"], None, 0, "r.yaml")


if __name__ == "__main__":
    # usage: python test_remote_streams.py CORPUS OUT.pt '{"cache_limit": ..., "predownload": ...}'
    import faulthandler

    faulthandler.dump_traceback_later(TRAIN_TIMEOUT_S - 20, exit=True)  # a stuck run shows where, then ends
    torch.set_num_threads(1)  # as the test session runs (conftest)
    weights, seen = train(sys.argv[1], **json.loads(sys.argv[3]))
    torch.save({"weights": weights, "seen": seen}, sys.argv[2])


@pytest.mark.slow
def test_a_recipe_naming_an_s3_corpus_trains_through_the_cli_as_from_its_local_copy(tmp_path: Path, s3_server,
                                                                                     small_corpus: Path):
    """The whole path a user takes: a corpus built by `codemix data build` (the session's small corpus),
    uploaded, named by a recipe's `data.corpus: s3://...` (neither made a local path nor built), and
    trained by `codemix train` in a process of its own: its final weights equal those of the same recipe
    on the local corpus, bit for bit."""
    from test_train_stages import STEP_TOKENS, write_recipe

    from codemix.config.recipe import load_recipe

    s3_server.create_bucket(Bucket="built")
    for path in small_corpus.rglob("*"):
        if path.is_file():
            s3_server.upload_file(str(path), "built", f"small/{path.relative_to(small_corpus).as_posix()}")
    stages = {"pt": {"tokens": 4 * STEP_TOKENS, "mixture": {"code": 0.5, "text": 0.5}, "init_from": {"ref": "scratch"}}}
    weights = {}
    for where, corpus in (("local", str(small_corpus)), ("remote", "s3://built/small")):
        recipe = write_recipe(tmp_path / where, "streamed", corpus, stages)
        assert load_recipe(recipe).data.corpus == corpus
        home = tmp_path / where / "home"
        (tmp_path / where / "tmp").mkdir()
        done = subprocess.run([sys.executable, "-m", "codemix.cli", "train", "--home", str(home), str(recipe)],
                              env={**os.environ, "TMPDIR": str(tmp_path / where / "tmp")}, capture_output=True,
                              text=True, timeout=TRAIN_TIMEOUT_S)
        assert done.returncode == 0, f"{where}:\n{done.stderr[-OUTPUT_TAIL:]}"
        (final,) = (home / "runs" / "streamed").glob("pt-*/final/model.safetensors")
        weights[where] = final.read_bytes()
    assert weights["remote"] == weights["local"]
    assert list((tmp_path / "remote" / "home" / "corpora" / ".remote").glob("small-*/*/train/**/*.mds"))
