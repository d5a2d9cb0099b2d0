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
from codemix.data import near_dedup, sorted_runs, sources, tasks
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
    run = tasks.run_of

    def recording_run(rows, key, value):
        found = run(rows, key, value)
        if rows.dtype == tasks._DROP:
            runs.append((value, isinstance(rows, np.memmap), found))
        return found

    monkeypatch.setattr(tasks, "run_of", recording_run)  # one worker: the tasks run in this process
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


def test_a_bucket_is_a_run_of_the_sorted_hashes_for_any_bucket_count():
    rows = np.zeros(5000, dtype=tasks._HASH)
    rows["hi"] = np.random.default_rng(0).integers(0, 2**64 - 1, len(rows), dtype=np.uint64, endpoint=True)
    rows["hi"][:3] = [0, 2**63, 2**64 - 1]  # the edges of the hash range
    rows = rows[np.argsort(rows["hi"], kind="stable")]
    for buckets in (1, 3, 7, tasks.MAX_BUCKETS):
        runs = [sorted_runs.bucket_run(rows, bucket, buckets) for bucket in range(buckets)]
        assert np.array_equal(np.concatenate(runs)["hi"], rows["hi"]), buckets  # each hash in one bucket, in order


def test_a_damaged_kept_hash_file_makes_its_source_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = load_data_spec(write_sources(tmp_path / "in"))
    out = build_corpus(spec, tmp_path / "out", processes=1, progress=lambda _: None)
    kept = sorted((out / ".hashes" / "a").glob("*.npy"))
    kept[0].write_bytes(kept[0].read_bytes()[:-24])  # one document's row cut off the end
    reads: list[str] = []
    read = tasks.read_source

    def counting_read(source, stats, part, files=None):
        reads.append(source.name)
        return read(source, stats, part, files)

    monkeypatch.setattr(tasks, "read_source", counting_read)  # one worker: the tasks run in this process
    said: list[str] = []
    changed = replace(spec, sources=[spec.sources[0], replace(spec.sources[1], licence="changed")])
    build_corpus(changed, out, processes=1, progress=said.append)
    assert "a" in reads and not any(line.startswith("a: dedup against its kept hashes") for line in said)
    assert Corpus.open(out).manifest("b")["filters"]["duplicate"] == 4  # the same decisions as from kept hashes
    assert all(np.load(path, mmap_mode="r").size for path in (out / ".hashes" / "a").glob("*.npy"))  # kept anew


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


# Runs `codemix data build` with the tasks of one pass (argv[1]) from rank 3 on held after their work,
# before datatrove marks them complete: the build is then killed with a task's outputs written but unmarked.
HOLD_PASS = """
import sys, time
from codemix.cli import main
from codemix.data import tasks
step = {"scan": tasks.ScanSlice, "decide": tasks.DecideBucket, "pack": tasks.PackSlice}[sys.argv[1]]
original = step.run
def held(self, data, rank=0, world_size=1):
    yield from original(self, data, rank, world_size)
    if rank >= 3:
        time.sleep(600)
step.run = held
sys.exit(main(sys.argv[2:]))
"""
STEPS = {"scan": tasks.ScanSlice, "decide": tasks.DecideBucket, "pack": PackSlice}


def wait_for_lock_release(out: Path, seconds: float = 10.0) -> None:
    """The killed build's forked workers (its group, killed with it but not waited for) may hold the
    build lock's descriptor a few milliseconds after it; the resumed build would then be refused."""
    import fcntl

    from codemix.data.build import LOCK_FILE

    fd = os.open(out / LOCK_FILE, os.O_RDWR)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "the killed build's lock was never released"
                time.sleep(0.01)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def resume_reference(tmp_path_factory) -> tuple[Path, dict]:
    """The sources of the kill/resume tests and the corpus an uninterrupted build makes of them."""
    root = tmp_path_factory.mktemp("resume")
    spec_path = write_sources(root / "in", files=24)
    reference = build_corpus(load_data_spec(spec_path), root / "reference", processes=1, progress=lambda _: None)
    return spec_path, corpus_bytes(reference)


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["scan", "decide", "pack"])
def test_killed_build_resumes_running_only_unfinished_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            resume_reference, killed: str):
    spec_path, reference = resume_reference
    assert load_data_spec(spec_path).dedup  # the decide pass runs
    out = tmp_path / "killed"
    command = [sys.executable, "-c", HOLD_PASS, killed,
               "data", "build", str(spec_path), "--out", str(out), "--workers", "1"]
    build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while len(list(out.glob(f".build-*/{killed}/completions/*"))) < 3 and build.poll() is None:
            time.sleep(0.005)
        time.sleep(0.05)  # a moment more: nothing else completes while rank 3 is held
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()
    assert build.returncode == -signal.SIGKILL
    wait_for_lock_release(out)
    (work,) = out.glob(".build-*")
    plan = json.loads((work / "plan.json").read_text())
    order = [name for name in ("scan", "decide", "pack") if name in plan["tasks"]]
    assert order == ["scan", "decide", "pack"]
    finished = {int(p.name) for p in (work / killed / "completions").iterdir()}
    assert finished == {0, 1, 2} and plan["tasks"][killed] > 3
    for later in order[order.index(killed) + 1:]:
        assert not list((work / later / "completions").glob("*"))

    ran: dict[str, list[int]] = {name: [] for name in order}
    for name in order:
        def recording_run(self, data, rank=0, world_size=1, name=name, original=STEPS[name].run):
            ran[name].append(rank)
            return original(self, data, rank, world_size)

        monkeypatch.setattr(STEPS[name], "run", recording_run)  # one worker: tasks run in this process
    build_corpus(load_data_spec(spec_path), out, processes=1, progress=lambda _: None)
    for name in order:  # the passes before the killed one are done; it resumes; those after run whole
        everything = set(range(plan["tasks"][name]))
        expected = set() if order.index(name) < order.index(killed) else everything - finished if name == killed \
            else everything
        assert sorted(ran[name]) == sorted(expected), name
    assert corpus_bytes(out) == reference


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
    code = main(["data", "build", str(spec_path), "--out", str(out), "--executor", "slurm", "--partition", "cpu",
                 "--time", "01:30:00", "--cpus-per-task", "3", "--mem-per-cpu-gb", "5"])  # none the defaults
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
    assert set(scripts) == {"codemix-scan", "codemix-decide", "codemix-pack", "codemix-finish"}
    arrays = 0
    for path in submitted.glob("*.sh"):  # each job asks for the resources given
        text = path.read_text()
        lines = text.splitlines()
        # datatrove's own small job after an array, merging its task stats, keeps its 1 CPU and 1G
        merge = "merge_stats " in text
        arrays += not merge
        wanted = ["--time=01:30:00"] + ([] if merge else ["--cpus-per-task=3", "--mem-per-cpu=5G"])
        for option in wanted:
            assert lines.count(f"#SBATCH {option}") == 1, (path.name, option)
        assert sum(line.startswith("#SBATCH --time=") for line in lines) == 1
    assert arrays == 4  # scan, decide, pack, finish

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
