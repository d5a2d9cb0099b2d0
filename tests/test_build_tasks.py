"""The build as datatrove tasks over slices of the sources' files: cross-source de-duplication by hash
buckets, output independent of the number of workers, and a build killed with -9 that resumes by
re-running only its unfinished tasks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from corpus_fixtures import corpus_bytes

from codemix.config.data_spec import load_data_spec
from codemix.data.build import build_corpus
from codemix.data.corpus import Corpus
from codemix.data import near_dedup, sources, tasks
from codemix.data.tasks import PackSlice


def write_sources(root: Path, files: int = 8) -> Path:
    """Two sources of `files` text files each; `b` repeats three of `a`'s documents and one of its own."""
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    for i in range(files):
        body = "\n".join(f"line {j} of document {i}: the quick brown fox {i * j}" for j in range(60))
        (root / "a" / f"doc{i}.txt").write_text(body)
        (root / "b" / f"doc{i}.txt").write_text(body.replace("fox", "dog") if i >= 3 else body)
    (root / "b" / "again.txt").write_text((root / "b" / "doc5.txt").read_text())
    spec = {
        "name": "sliced", "seq_len": 32, "val_fraction": 0.2, "seed": 0, "dedup": True, "task_bytes": 8000,
        "tokenizer": {"vocab_size": 512, "sample_bytes_per_source": 20_000, "min_frequency": 2},
        "sources": [{"name": n, "kind": "text", "licence": "test", "reader": {"type": "dir", "path": str(root / n)}}
                    for n in ("a", "b")],
    }
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root / "data.yaml"


def test_slices_dedup_across_sources_and_workers_do_not_change_the_output(tmp_path: Path):
    spec = load_data_spec(write_sources(tmp_path / "in"))
    one = build_corpus(spec, tmp_path / "one", processes=1, progress=lambda _: None)
    two = build_corpus(spec, tmp_path / "two", processes=2, progress=lambda _: None)
    assert corpus_bytes(one) == corpus_bytes(two)
    corpus = Corpus.open(two)
    a, b = corpus.manifest("a"), corpus.manifest("b")
    assert a["tasks"] > 1 and b["tasks"] > 1  # each source was cut into slices
    assert (a["documents"], a["filters"]["duplicate"]) == (8, 0)
    # three of a's documents, and one of its own in another slice
    assert (b["documents"], b["filters"]["duplicate"]) == (5, 4)
    assert not list(two.glob(".build*"))  # the work folder goes once the corpus is complete


def test_a_pack_task_reads_only_its_slices_drops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each drop list is memory-mapped and binary-searched: a pack task's reads and memory are its own
    slice's drops, not the corpus's."""
    runs: list[tuple[tuple[int, int], bool, np.ndarray]] = []
    run = tasks._run

    def recording_run(rows, key, value):
        found = run(rows, key, value)
        if rows.dtype == tasks._DROP:
            runs.append((value, isinstance(rows, np.memmap), found))
        return found

    monkeypatch.setattr(tasks, "_run", recording_run)  # one worker: the tasks run in this process
    out = build_corpus(load_data_spec(write_sources(tmp_path / "in")), tmp_path / "out", processes=1,
                       progress=lambda _: None)
    manifests = [Corpus.open(out).manifest(name) for name in ("a", "b")]
    slices = sum(manifest["tasks"] for manifest in manifests)
    assert len(runs) == slices * min(slices, tasks.MAX_BUCKETS)  # each pack task searched each drop list
    assert all(mapped for _, mapped, _ in runs)
    for (source, index), _, found in runs:
        assert found["source"].tolist() == [source] * len(found) and found["slice"].tolist() == [index] * len(found)
    assert sum(len(found) for _, _, found in runs) == sum(m["filters"]["duplicate"] for m in manifests) == 4
    assert len({value for value, _, found in runs if len(found)}) > 1  # the lists hold several slices' drops


def test_near_duplicate_drops_are_read_by_scan_rank(tmp_path: Path):
    path = near_dedup.folder(tmp_path) / "drop.npy"
    path.parent.mkdir(parents=True)
    np.save(path, np.array([(0, 5), (2, 1), (2, 7), (3, 0)], dtype=near_dedup.DROP))
    assert [near_dedup.dropped_positions(str(tmp_path), rank) for rank in range(5)] == [{5}, set(), {1, 7}, {0}, set()]


def test_each_source_is_listed_once_each_slice_read_and_tokenized_once_and_only_built_sources_tokenized(tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch):
    trained = build_corpus(load_data_spec(write_sources(tmp_path / "in")), tmp_path / "trained", processes=1,
                           progress=lambda _: None)
    shutil.copy(trained / "tokenizer.json", tmp_path / "tokenizer.json")
    spec = load_data_spec(tmp_path / "in" / "data.yaml")
    # a tokenizer given, not trained: changing b leaves it, and with it a, as they are
    spec = replace(spec, tokenizer=replace(spec.tokenizer, path=str(tmp_path / "tokenizer.json")))
    reads: list[tuple[str, int]] = []
    listings: list[str] = []
    read, listing = tasks.read_source, sources.source_files

    def counting_read(source, stats, part, files=None):
        reads.append((source.name, part.index))
        return read(source, stats, part, files)

    def counting_listing(source):
        listings.append(source.name)
        return listing(source)

    monkeypatch.setattr(tasks, "read_source", counting_read)  # one worker: the tasks run in this process
    monkeypatch.setattr(tasks, "source_files", counting_listing)
    monkeypatch.setattr(sources, "source_files", counting_listing)
    out = build_corpus(spec, tmp_path / "out", processes=1, progress=lambda _: None)
    slices = {name: Corpus.open(out).manifest(name)["tasks"] for name in ("a", "b")}
    assert sorted(reads) == sorted((name, k) for name, count in slices.items() for k in range(count))
    assert sorted(listings) == ["a", "b"]  # each source's files listed once, by the build, not by each task

    # rebuilding b alone: a decides which of b's texts are duplicates through its kept hashes, unread
    reads.clear()
    tokenized: list[str] = []
    writer = tasks.TokenWriter

    def recording_writer(folder, settings):
        tokenized.append(folder.parent.name)
        return writer(folder, settings)

    monkeypatch.setattr(tasks, "TokenWriter", recording_writer)
    changed = replace(spec, sources=[spec.sources[0], replace(spec.sources[1], licence="changed")])
    build_corpus(changed, out, processes=1, progress=lambda _: None)
    assert {name for name, _ in reads} == {"b"} and set(tokenized) == {"b"}
    assert len(tokenized) == slices["b"] and Corpus.open(out).manifest("b")["filters"]["duplicate"] == 4
    assert sorted(p.name for p in (out / ".hashes").iterdir()) == ["a", "b"]

    # adding c, copies of a's files and texts of its own: only c is read, and a's and b's kept hashes
    # find its copies; a changed input file of a (its mtime) makes a's hashes stale, and a is read again
    (tmp_path / "in" / "c").mkdir()
    for i in range(4):
        shutil.copy(tmp_path / "in" / "a" / f"doc{i}.txt", tmp_path / "in" / "c" / f"doc{i}.txt")
    for k in range(6):
        (tmp_path / "in" / "c" / f"own{k}.txt").write_text("\n".join(f"c's own line {j} of {k}" for j in range(60)))
    added = replace(changed, sources=[*changed.sources, replace(spec.sources[1], name="c", reader=replace(
        spec.sources[1].reader, path=str(tmp_path / "in" / "c")))])
    reads.clear()
    build_corpus(added, out, processes=1, progress=lambda _: None)
    assert {name for name, _ in reads} == {"c"}
    assert Corpus.open(out).manifest("c")["filters"]["duplicate"] == 4
    os.utime(tmp_path / "in" / "a" / "doc0.txt", ns=(1, 1))
    reads.clear()
    build_corpus(replace(added, sources=[*added.sources[:2], replace(added.sources[2], licence="again")]), out,
                 processes=1, progress=lambda _: None)
    assert {name for name, _ in reads} == {"a", "c"}  # b's hashes still fit; a's file changed


@pytest.mark.slow
def test_killed_build_resumes_running_only_unfinished_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec_path = write_sources(tmp_path / "in", files=24)
    reference = build_corpus(load_data_spec(spec_path), tmp_path / "reference", processes=1, progress=lambda _: None)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "codemix.cli", "data", "build", str(spec_path), "--out", str(out), "--workers", "1"]
    build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while len(list(out.glob(".build-*/pack/completions/*"))) < 3 and build.poll() is None:
            time.sleep(0.005)
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()
    assert build.returncode == -signal.SIGKILL
    (work,) = out.glob(".build-*")
    finished = {int(p.name) for p in (work / "pack" / "completions").iterdir()}
    total = json.loads((work / "plan.json").read_text())["tasks"]["pack"]
    assert 3 <= len(finished) < total

    ran: list[int] = []
    original = PackSlice.run

    def recording_run(self, data, rank=0, world_size=1):
        ran.append(rank)
        return original(self, data, rank, world_size)

    monkeypatch.setattr(PackSlice, "run", recording_run)  # one worker: tasks run in this process
    build_corpus(load_data_spec(spec_path), out, processes=1, progress=lambda _: None)
    assert sorted(ran) == sorted(set(range(total)) - finished)
    assert corpus_bytes(out) == corpus_bytes(reference)


@pytest.mark.slow
def test_slurm_executor_writes_chained_job_arrays_that_build_the_same_corpus(tmp_path: Path, capsys,
                                                                           monkeypatch: pytest.MonkeyPatch):
    import dill

    from codemix.cli import main

    spec_path = write_sources(tmp_path / "in")
    submitted = tmp_path / "submitted"
    submitted.mkdir()
    fake = tmp_path / "bin" / "sbatch"  # records each job (its options and script) and answers as sbatch does
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nn=$(ls {submitted} | wc -l)\nprintf "%s\\n" "$@" > {submitted}/$n.args\n'
                    f'cp "$(eval echo \\${{$#}})" {submitted}/$n.sh\necho "Submitted batch job $((n + 100))"\n')
    fake.chmod(0o755)
    (fake.parent / "scontrol").write_text("#!/bin/sh\necho localhost\n")  # `scontrol show hostnames`: this node
    (fake.parent / "scontrol").chmod(0o755)
    out = tmp_path / "slurm"
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    code = main(["data", "build", str(spec_path), "--out", str(out), "--executor", "slurm", "--partition", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0 and "submitted to SLURM" in printed and not (out / "corpus.json").exists()
    (work,) = out.glob(".build-*")
    plan = json.loads((work / "plan.json").read_text())
    scripts = {}
    for args in sorted(submitted.glob("*.args"), key=lambda p: int(p.stem)):
        script = args.with_suffix(".sh").read_text()
        name = next(line.split("=", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH --job-name="))
        scripts.setdefault(name, (script, args.read_text().split()))
    for name in ("scan", "decide", "pack"):
        script, options = scripts[f"codemix-{name}"]
        assert f"#SBATCH --array=0-{plan['tasks'][name] - 1}\n" in script and "#SBATCH --partition=cpu" in script
        assert f"launch_pickled_pipeline {work / name / 'executor.pik'}" in script
        assert name == "scan" or any(o.startswith("--dependency=afterok:") for o in options)  # after the pass before
    assert "#SBATCH --array=0-0" in scripts["codemix-finish"][0]

    # What SLURM would do: every array task runs its rank from the pickled executor, pass after pass.
    monkeypatch.setenv("SLURM_NODELIST", "localhost")
    for name in ("scan", "decide", "pack", "finish"):
        executor = dill.loads((work / name / "executor.pik").read_bytes())
        for rank in range(executor.tasks):
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(rank))
            executor.run()
    local = build_corpus(load_data_spec(spec_path), tmp_path / "local", processes=2, progress=lambda _: None)
    assert not (work / "parts").exists() and (work / "pack" / "logs").is_dir()  # task logs stay for the cluster's user
    assert {k: v for k, v in corpus_bytes(out).items() if not k.startswith(".build-")} == corpus_bytes(local)
    assert Corpus.open(out).manifest("b")["filters"] == Corpus.open(local).manifest("b")["filters"]


def test_ray_executor_without_ray_installed_is_a_one_line_error():
    import importlib.util

    from codemix.data.executors import RayExecutor
    from codemix.errors import ConfigError

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed here")
    with pytest.raises(ConfigError, match=r"^--executor ray: the ray package is not installed in this environment "):
        RayExecutor(2)


def test_data_build_executor_ray_reaches_the_ray_check(tmp_path: Path, capsys):
    import importlib.util

    from codemix.cli import main

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed here")
    assert main(["data", "build", "--quickstart", "--executor", "ray", "--home", str(tmp_path)]) != 0
    assert "--executor ray: the ray package is not installed" in capsys.readouterr().err
    assert not (tmp_path / "corpora").exists()  # refused before any work
