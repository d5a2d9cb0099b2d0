"""Tokens per second the MixtureDataModule train loader delivers from a corpus in object storage (an
S3-compatible server on a loopback socket: moto's, in a process of its own) against the same corpus on
local disk, measured in the same run: with an empty cache (every training shard is downloaded as the
loader reaches it), with the shards already cached, and with a cache limit below the corpus (streaming's
least: its indexes plus 4 of its largest shard), past which streaming evicts shards
(`train_shards_cached_after` says whether it did: with a few large shards all wanted at once it may
evict none).

    .venv/bin/python benchmarks/remote_loader_throughput.py [CORPUS] [--micro-batch N] [--max-tokens N]

CORPUS is a corpus name or path (default: the quickstart corpus, built first when missing); the stage
is its natural mixture, one pass at most (as benchmarks/loader_throughput.py). One loader worker
(num_workers 0): the loader's own cost, not its parallelism. Loopback has no network latency or
bandwidth limit: the remote figures are streaming's download path (S3 client, cache bookkeeping,
file writes) at its best; a real object store adds its latency to every shard it fetches. Results go to
stdout and to benchmarks/results/loader_remote_cpu.json, with the core count and the load average.
"""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from bench_corpus import open_bench_corpus, recorded_path  # benchmarks/ is on sys.path when run as a script
from codemix.atomic import write_json_atomic
from codemix.data.corpus import Corpus
from codemix.data.remote import SHARDS_IN_CACHE, fetch_corpus, read_index, stream_cache
from loader_throughput import _natural_stage, _time_loader, loader_arguments

RESULTS = Path(__file__).resolve().parent / "results" / "loader_remote_cpu.json"
BUCKET, PREFIX = "bench", "corpus"
SERVER_START_S = 60


@contextmanager
def loopback_s3() -> Iterator[str]:
    """moto's S3 server in a child process on a free loopback port; yields its endpoint and sets the
    variables streaming's S3 client reads."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"moto_server on port {port} did not start in {SERVER_START_S} s")
                time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          S3_ENDPOINT_URL=endpoint)
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def upload(corpus: Path, endpoint: str) -> float:
    """Upload the corpus to s3://BUCKET/PREFIX; returns the bytes of its training shards."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for path in corpus.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            s3.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(corpus).as_posix()}")
    return sum(path.stat().st_size for path in corpus.glob("*/train/**/*.mds"))


def remote_run(url: str, cache: Path, stage: dict, limit: str | None, fresh: bool) -> dict:
    """The loader over the remote corpus, cached in `cache` (emptied first when `fresh`)."""
    if fresh:
        shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        fetch_corpus(url, cache)
        fetch_s = time.perf_counter() - started
    corpus = Corpus.open(cache)
    names = list(stage["mixture"])
    row = _time_loader(cache, stage, 0, stream_cache(corpus, names, limit, None, "benchmark"))
    row["cache_limit"] = limit
    # streaming checks the limit before each download, not counting the downloads in flight: when every
    # shard is wanted at once (a few large shards) the cache passes the limit and nothing is evicted
    row["train_shards_cached_after"] = len(list(cache.glob("*/train/**/*.mds")))
    if fresh:
        row["fetch_metadata_and_val_seconds"] = round(fetch_s, 3)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = loader_arguments(__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    corpus = open_bench_corpus(args.corpus)
    stage = _natural_stage(corpus, args.micro_batch, args.max_tokens)
    shards = [shard["raw_data"]["bytes"]
              for name in stage["mixture"] for shard in read_index(corpus.path / name / "train")]
    indexes = sum((corpus.path / name / "train" / "index.json").stat().st_size for name in stage["mixture"])
    least = indexes + SHARDS_IN_CACHE * max(shards)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, loopback_s3() as endpoint:
        shard_bytes = upload(corpus.path, endpoint)
        url, cache = f"s3://{BUCKET}/{PREFIX}", Path(tmp) / "cache"
        local = _time_loader(corpus.path, stage, 0)
        runs = {
            "remote_empty_cache": remote_run(url, cache, stage, None, fresh=True),
            "remote_cached": remote_run(url, cache, stage, None, fresh=False),
            **({"remote_cache_limit_below_corpus": remote_run(url, cache, stage, str(least), fresh=True)}
               if least < indexes + sum(shards) else {}),
        }
    report = {
        "corpus": recorded_path(corpus.path),
        "command": shlex.join([".venv/bin/python", "benchmarks/remote_loader_throughput.py", *sys.argv[1:]]),
        "object_store": "moto_server (S3 API) on 127.0.0.1, its own process",
        "train_shards": len(shards),
        "train_shard_mb": round(shard_bytes / 1e6, 1),
        "seq_len": corpus.seq_len,
        "micro_batch": args.micro_batch,
        "stage_tokens": stage["tokens"],
        "cpu_count": os.cpu_count(),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "local": local,
        **runs,
        "remote_over_local": {name: round(row["tokens_per_s"] / local["tokens_per_s"], 3)
                              for name, row in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
