"""Build throughput: MB/s of raw text through clean + tokenize + pack + write (the `codemix data build`
pipeline, 2 processes) against HF tokenizers' own `encode_batch` on the same text with the same
tokenizer, measured in the same run (target: ratio >= 0.6); and loader throughput: tokens/s the
MixtureDataModule delivers against what a CPU tiny-model training step consumes, also in the same run.

    .venv/bin/python benchmarks/data_throughput.py [--bytes-per-source N] [--repeats N] [--processes N] [--corpus NAME]

The text is the quickstart spec's sources, read into memory first (reading from disk is in neither
side), at most --bytes-per-source raw UTF-8 bytes from each. Results go to stdout and to
benchmarks/results/data_throughput_cpu.json. The loader part (benchmarks/loader_throughput.py) reads a
built corpus (default: the quickstart under CODEMIX_HOME, built first when missing).
"""

import argparse
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tokenizers

from codemix.config.data_spec import code_filters_on, load_data_spec, quickstart_spec_path
from codemix.data.clean import Cleaner
from codemix.atomic import write_json_atomic
from codemix.data.shards import EncodeSettings, EncoderPool, write_splits
from codemix.data.sources import Document, ReadStats, read_source
from codemix.data.tokenizer import save_tokenizer, special_ids, token_dtype, train_bpe, vocab_size
from loader_throughput import measure_loader  # benchmarks/ is on sys.path when run as a script

RESULTS = Path(__file__).resolve().parent / "results" / "data_throughput_cpu.json"


def read_text(bytes_per_source: int) -> list[tuple[str, bool, list[Document]]]:
    """(source name, code filters on, documents) of each quickstart source, up to the byte budget."""
    sources = []
    for source in load_data_spec(quickstart_spec_path()).sources:
        docs, size = [], 0
        for doc in read_source(source, ReadStats()):
            docs.append(doc)
            size += len(doc.text.encode("utf-8"))
            if size >= bytes_per_source:
                break
        sources.append((source.name, code_filters_on(source), docs))
    return sources


def _cpu_seconds() -> float:
    """CPU time of this process's threads and of its reaped child processes (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `work()`: on a shared machine the CPU time is the steadier figure."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    work()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def _run_pipeline(sources, settings: EncodeSettings, processes: int, seq_len: int, out: Path) -> None:
    """One pass of the build's pipeline over in-memory documents: clean (filters + cross-source
    dedup, in the parent), tokenize (pool), pack and write MDS train/val splits."""
    cleaner = Cleaner({name: filters for name, filters, _ in sources}, dedup=True)
    with EncoderPool(settings, processes) as pool:
        for name, _, docs in sources:
            kept = (doc.text for doc in docs if cleaner.keep(doc, name))
            write_splits(pool, kept, out / name, seq_len, settings.dtype)


def measure_build(bytes_per_source: int = 2_000_000, repeats: int = 3, processes: int = 2, seq_len: int = 512) -> dict:
    """Best-of-`repeats` MB/s of the build pipeline and of encode_batch, alternating so that load
    from other work on the machine hits both sides alike."""
    sources = read_text(bytes_per_source)
    texts = [doc.text for _, _, docs in sources for doc in docs]
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    with tempfile.TemporaryDirectory(prefix="codemix-bench-") as tmp:
        tmp_dir = Path(tmp)
        tokenizer = train_bpe(texts[:: max(1, len(texts) // 2000)], vocab_size=8192, min_frequency=2)
        save_tokenizer(tokenizer, tmp_dir / "tokenizer.json")
        dtype = token_dtype(vocab_size(tokenizer))
        settings = EncodeSettings(str(tmp_dir / "tokenizer.json"), special_ids(tokenizer)["eos_id"], dtype, 0, 0.02)
        pipeline, reference = [], []
        for n in range(repeats):
            reference.append(_timed(lambda: tokenizer.encode_batch(texts)))
            out = tmp_dir / f"run{n}"
            pipeline.append(_timed(lambda: _run_pipeline(sources, settings, processes, seq_len, out)))
    build_mb_s = megabytes / min(wall for wall, _ in pipeline)
    encode_mb_s = megabytes / min(wall for wall, _ in reference)
    build_cpu, encode_cpu = min(cpu for _, cpu in pipeline), min(cpu for _, cpu in reference)
    return {
        "megabytes": round(megabytes, 3),
        "documents": len(texts),
        "sources": [name for name, _, _ in sources],
        "build_mb_per_s": round(build_mb_s, 3),
        "encode_batch_mb_per_s": round(encode_mb_s, 3),
        "ratio": round(build_mb_s / encode_mb_s, 3),
        # CPU seconds per MB: the work each side does, whatever else shares the machine
        "build_cpu_s_per_mb": round(build_cpu / megabytes, 3),
        "encode_batch_cpu_s_per_mb": round(encode_cpu / megabytes, 3),
        "cpu_ratio": round(encode_cpu / build_cpu, 3),
        "build_seconds": [[round(wall, 3), round(cpu, 3)] for wall, cpu in pipeline],
        "encode_batch_seconds": [[round(wall, 3), round(cpu, 3)] for wall, cpu in reference],
    }


def environment() -> dict:
    return {
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews both sides
        "versions": {
            "python": platform.python_version(),
            "tokenizers": tokenizers.__version__,
            "mosaicml-streaming": version("mosaicml-streaming"),
            "numpy": np.__version__,
            "codemix": version("codemix"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes-per-source", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--corpus", default="quickstart", help="corpus name or path for the loader part")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    config = {"bytes_per_source": args.bytes_per_source, "repeats": args.repeats, "processes": args.processes, "seq_len": 512}
    report = {
        **environment(),
        "config": config,
        "command": shlex.join([".venv/bin/python", "benchmarks/data_throughput.py", *sys.argv[1:]]),
        "build": measure_build(**config),
        "loader": measure_loader(args.corpus),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    build = report["build"]
    print(
        f"build {build['build_mb_per_s']} MB/s vs encode_batch {build['encode_batch_mb_per_s']} MB/s: "
        f"ratio {build['ratio']} (CPU-time ratio {build['cpu_ratio']}) on {build['megabytes']} MB"
    )
    loader = report["loader"]
    for row in loader["loader"]:
        print(f"loader num_workers={row['num_workers']}: {row['tokens_per_s']:,} tokens/s, "
              f"{row['ratio_to_tiny_training']}x the tiny model's training consumption "
              f"({loader['tiny_training']['tokens_per_s']:,} tokens/s)")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
