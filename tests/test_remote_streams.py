"""A corpus in object storage: built locally, uploaded to a real S3-compatible server (moto's, on a
loopback socket), trained on from there: the weights equal those trained from the local corpus."""

import os
import socket
from pathlib import Path

import boto3
import lightning as L
import pytest
import torch
from mixture_fixtures import SEQ_LEN, RecordingLM, SourceSpec, write_corpus

from codemix.data.datamodule import MixtureDataModule
from codemix.errors import ConfigError

STAGE = {"mixture": {"code": 0.6, "text": 0.4}, "tokens": SEQ_LEN * 8 * 6, "seq_len": SEQ_LEN, "global_batch": 8,
         "micro_batch": 4, "seed": 3}


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch):
    from moto.server import ThreadedMotoServer

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
    torch.manual_seed(0)
    model = RecordingLM()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, limit_val_batches=0)
    trainer.fit(model, datamodule=MixtureDataModule(corpus, **STAGE))
    return model.state_dict()


@pytest.mark.slow
def test_a_stage_streamed_from_s3_trains_the_same_weights(tmp_path: Path, s3_server):
    corpus = write_corpus(tmp_path / "corpus", [SourceSpec("py", "code", 40), SourceSpec("kjv", "text", 60, val_samples=8)])
    s3_server.create_bucket(Bucket="corpora")
    for path in corpus.rglob("*"):
        if path.is_file():
            s3_server.upload_file(str(path), "corpora", f"small/{path.relative_to(corpus).as_posix()}")

    local = train(str(corpus))
    remote = train("s3://corpora/small")
    assert local.keys() == remote.keys()
    assert all(torch.equal(local[k], remote[k]) for k in local)
    (cache,) = (Path(os.environ["CODEMIX_HOME"]) / "corpora" / ".remote").glob("small-*")
    assert list(cache.glob("py/train/**/*.mds"))  # fetched by streaming while training, not before

    with pytest.raises(ConfigError, match="s3://corpora/nothing/corpus.json: cannot download"):
        MixtureDataModule("s3://corpora/nothing", **STAGE)
