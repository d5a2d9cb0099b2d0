"""A corpus in object storage: built locally, uploaded to a real S3-compatible server (moto's, on a
loopback socket), trained on from there: the weights equal those trained from the local corpus."""

import os
import re
import socket
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


def train(corpus: str) -> dict[str, torch.Tensor]:
    """Train the stage on `corpus` with the default cache settings (as codemix.plan gives them)."""
    opened = Corpus.open(resolve_corpus(corpus))
    plan = plan_data(opened, STAGE["mixture"], STAGE["tokens"], STAGE["seq_len"], STAGE["global_batch"])
    cache = stream_cache(opened, [p.source.name for p in plan.drawn], None, None, "recipe.yaml")
    torch.manual_seed(0)
    model = RecordingLM()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, limit_val_batches=0)
    trainer.fit(model, datamodule=MixtureDataModule(plan, STAGE["micro_batch"], STAGE["seed"], cache=cache))
    return model.state_dict()


def upload_corpus(tmp_path: Path, s3) -> Path:
    """A corpus built locally and uploaded to s3://corpora/small; returns the local one."""
    corpus = write_corpus(tmp_path / "corpus", [SourceSpec("py", "code", 40), SourceSpec("kjv", "text", 60, val_samples=8)])
    s3.create_bucket(Bucket="corpora")
    for path in corpus.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "corpora", f"small/{path.relative_to(corpus).as_posix()}")
    return corpus


def train_shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/train/**/*.mds"))


@pytest.mark.slow
def test_a_stage_streamed_from_s3_trains_the_same_weights(tmp_path: Path, s3_server):
    corpus = upload_corpus(tmp_path, s3_server)
    assert torch_equal(train(str(corpus)), train("s3://corpora/small"))
    (cache,) = (Path(os.environ["CODEMIX_HOME"]) / "corpora" / ".remote").glob("small-*")
    assert train_shards(cache) and len(train_shards(cache)) == len(train_shards(corpus))  # all kept: they fit

    with pytest.raises(ConfigError, match="s3://corpora/nothing/corpus.json: cannot download"):
        resolve_corpus("s3://corpora/nothing")


def torch_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cache_settings_are_checked_before_any_training_shard_is_read(tmp_path: Path, s3_server):
    corpus = upload_corpus(tmp_path, s3_server)
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
