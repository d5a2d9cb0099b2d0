"""The build's work as independent tasks, run by datatrove's executors (local processes, or a SLURM job array).

A task is one slice of one source's files (every count-th file in hash order). Up to five passes, each
an executor whose tasks datatrove marks complete (`<work>/<pass>/completions/<rank>`), so a killed
build re-runs only the tasks that did not finish:

    scan    (one task per slice)  read and clean the slice once; tokenize each kept document of a
            source being built with the corpus tokenizer into the slice's token store
            (codemix.data.slice_tokens); with dedup on, hash each kept document into the slice's
            hash file, `hashes/<source>/<slice>.npy`, sorted by hash (a bucket is a range of hashes,
            so any bucket count reads it); MinHash signatures of near_dedup sources
    decide  (one task per bucket, only with dedup on)  take the bucket's run of every hash file, sort
            it by (hash, source priority, slice, position) and list every one after the first as
            dropped, in `drop/<bucket>.npy`, by (source, slice, position): memory is one bucket's, and
            the source earlier in the data YAML keeps a text
    near_pairs, near_clusters  (only with a near_dedup source)  the near-duplicates to drop
            (codemix.data.near_dedup)
    pack    (one task per slice of a source being built)  skip the dropped documents of the slice's
            stored tokens, pack and write the slice's own MDS train/val parts and counts; the text
            is not read again. Of each drop list it reads only its slice's run, found by binary search
            in the memory-mapped file, so its reads and memory are its slice's drops

The work folder (`<source>` a name, `<slice>` and `<bucket>` five digits):

    plan.json, files/<source>/<slice>.json             what the build is, each slice's input files
    tokens/<source>/<slice>/, parts/<source>/<slice>/  a slice's token store, its packed parts
    hashes/<source>/<slice>.npy, drop/<bucket>.npy     the dedup passes' files
    minhash/                                           the near-duplicate passes' (codemix.data.near_dedup)
    <pass>/, slurm/<pass>/                             a pass's logs and completion markers, its SLURM logs

A file a later pass reads is written whole or not at all (codemix.atomic) and read by its planned
name, so a killed task's temp file is never read.

The parent then merges each source's parts (`codemix.data.build`). Output depends on the slices, never
on the number of workers: a source is cut into one slice per `task_bytes` of input files; a source
with a byte cap is one slice, since its cap takes a prefix of the hash-ordered files. A source only
scanned (with dedup, an earlier source that decides which later texts are duplicates) is hashed, not
tokenized."""

import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from datatrove.data import Document as PipelineDocument
from datatrove.pipeline.base import PipelineStep

from codemix.atomic import atomic_file, write_json_atomic
from codemix.config.data_spec import DataSpec, SourceSpec, code_filters_on
from codemix.data import near_dedup
from codemix.data.clean import Cleaner
from codemix.data.shards import EncodeSettings, pack_holding_out
from codemix.data.slice_tokens import SliceTokens, TokenWriter
from codemix.data.sorted_runs import bucket_run, run_of
from codemix.data.sources import UNSLICEABLE_READERS, ReadStats, Slice, read_source, source_files

# A decide task holds one hash bucket, about total hashes / min(slices, MAX_BUCKETS) at 24 bytes a
# document: a slice's worth up to 256 slices, then growing with the corpus (~380 MB at 4e9 documents).
# The cap bounds the file opens, buckets x slices: each decide task reads its run of every hash file.
MAX_BUCKETS = 256
PASSES = ("scan", "decide", "near_pairs", "near_clusters", "pack")
COUNTS_FILE = "counts.json"
_HASH = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("source", "<u2"), ("slice", "<u4"), ("position", "<u4")])
_DROP = np.dtype([("source", "<u2"), ("slice", "<u4"), ("position", "<u4")])


@dataclass(frozen=True)
class Task:
    source: int  # index in the data YAML: the source's dedup priority
    part: Slice


@dataclass(frozen=True)
class BuildPlan:
    """Everything a task needs, picklable (datatrove ships it to the workers or the SLURM job)."""

    spec: DataSpec
    work: str  # the build's work folder: per-pass logs and markers, hash buckets, packed parts
    tasks: tuple[Task, ...]  # the scan and pack tasks, by rank
    build: frozenset[int]  # sources to pack; with dedup the others are scanned too, they keep texts first
    settings: EncodeSettings

    def pass_tasks(self, name: str) -> int:
        counts = {"scan": len(self.tasks), "decide": self.buckets, "near_pairs": self.spec.minhash.buckets,
                  "near_clusters": 1}
        return counts[name] if name in counts else len(self.pack_ranks())

    @property
    def near(self) -> bool:
        """Whether a scanned source removes near-duplicates."""
        return any(self.spec.sources[task.source].near_dedup for task in self.tasks)

    @property
    def buckets(self) -> int:
        return min(len(self.tasks), MAX_BUCKETS)

    def pack_ranks(self) -> list[int]:
        return [rank for rank, task in enumerate(self.tasks) if task.source in self.build]

    def part_dir(self, task: Task) -> Path:
        return self._slice_dir("parts", task)

    def tokens_dir(self, task: Task) -> Path:
        return self._slice_dir("tokens", task)

    def hashes_path(self, task: Task) -> Path:
        return self._slice_dir("hashes", task).with_suffix(".npy")

    def drop_path(self, bucket: int) -> Path:
        return Path(self.work) / "drop" / f"{bucket:05d}.npy"

    def files_path(self, task: Task) -> Path:
        return self._slice_dir("files", task).with_suffix(".json")

    def slice_files(self, task: Task) -> list[Path]:
        return [Path(path) for path in json.loads(self.files_path(task).read_text())]

    def _slice_dir(self, what: str, task: Task) -> Path:
        return Path(self.work) / what / self.spec.sources[task.source].name / f"{task.part.index:05d}"


def plan_slices(spec: DataSpec, sources: list[int]) -> tuple[list[Task], dict[Task, list[Path]]]:
    """The scan/pack tasks of `sources`, one slice per `task_bytes` of their input files, and each
    slice's files: the sources are listed here, once, not by each of their tasks."""
    tasks, files = [], {}
    for i in sources:
        source = spec.sources[i]
        listed = [] if source.reader.type in UNSLICEABLE_READERS else source_files(source)
        count = 1
        if source.max_bytes is None and listed:
            size = sum(path.stat().st_size for _, path in listed)
            count = max(1, min(len(listed), math.ceil(size / spec.task_bytes)))
        for k in range(count):
            task = Task(i, Slice(k, count))
            tasks.append(task)
            files[task] = [path for _, path in listed[k::count]]
    return tasks, files


def write_slice_files(plan: BuildPlan, files: dict[Task, list[Path]]) -> None:
    """Each slice's files, for its scan task. A resumed build keeps the lists it started with, so its
    remaining tasks read what the finished ones were planned with."""
    for task, paths in files.items():
        listing = plan.files_path(task)
        if not listing.is_file():
            listing.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(listing, [str(path) for path in paths])


def slice_documents(source: SourceSpec, part: Slice, stats: ReadStats, cleaner: Cleaner,
                    files: list[Path] | None = None) -> Iterator[str]:
    """The slice's documents that pass cleaning, until its byte cap, as the scan task reads them: a
    position in this sequence names a document in the hash buckets, the drop lists and the token
    store. Only a capped source (one slice, at most max_bytes) removes its own duplicates here, in
    memory: its cap counts the documents it keeps; every other duplicate is found by the bucket pass."""
    kept = 0
    for doc in read_source(source, stats, part, files):
        if cleaner.keep(doc, source.name):
            yield doc.text
            kept += len(doc.text.encode("utf-8"))
            if source.max_bytes is not None and kept >= source.max_bytes:
                stats.capped = True
                return


def slice_cleaner(spec: DataSpec, source: SourceSpec) -> Cleaner:
    return Cleaner({source.name: code_filters_on(source)}, dedup=spec.dedup and source.max_bytes is not None)


class _PlanStep(PipelineStep):
    type = "codemix"

    def __init__(self, plan: BuildPlan):
        super().__init__()
        self.plan = plan


class ScanSlice(_PlanStep):
    """Pass 1: read and clean the slice; tokenize its kept documents into the slice's token store (a
    source being built), hash them into bucket files (with dedup on), and pass each document of a
    near_dedup source on to the MinHash signature step."""

    name = "scan"

    def run(self, data, rank: int = 0, world_size: int = 1):
        plan = self.plan
        task = plan.tasks[rank]
        source = plan.spec.sources[task.source]
        if task.source not in plan.build and not source.near_dedup and plan.hashes_path(task).is_file():
            return  # only hashed, and its hashes are here: the corpus kept them (codemix.data.build), or an attempt
        shutil.rmtree(plan.tokens_dir(task), ignore_errors=True)  # a killed attempt's (this task wrote them)
        tokens = TokenWriter(plan.tokens_dir(task), plan.settings) if task.source in plan.build else None
        stats, cleaner = ReadStats(), slice_cleaner(plan.spec, source)
        rows = []
        for position, text in enumerate(slice_documents(source, task.part, stats, cleaner, plan.slice_files(task))):
            if tokens is not None:
                tokens.add(text)
            if plan.spec.dedup:
                digest = xxhash.xxh3_128_intdigest(text.encode("utf-8"))
                rows.append((digest >> 64, digest & (2**64 - 1), task.source, task.part.index, position))
            if source.near_dedup:
                yield PipelineDocument(text=text, id=f"{rank}/{position}")
        if tokens is not None:
            tokens.finish({"capped": stats.capped, "filters": cleaner.counts(source.name),
                           "skipped": {"binary": stats.skipped_binary, "non_utf8": stats.skipped_non_utf8,
                                       "unreadable": stats.skipped_unreadable},
                           "read": {"files": stats.files, "documents": stats.documents, "bytes": stats.bytes}})
        self.stat_update("documents", value=stats.documents)
        if not plan.spec.dedup:
            return
        hashes = np.array(rows, dtype=_HASH)
        # sorted by hash, so each bucket (a range of hashes) is a run whatever the bucket count: one file a
        # slice, not one a bucket, and a later build with more or fewer slices can reuse it
        _save(plan.hashes_path(task), hashes[np.argsort(hashes["hi"], kind="stable")])


class DecideBucket(_PlanStep):
    """Pass 2: in one bucket, every occurrence of a hash after the first (by source priority, slice,
    position) is a duplicate to drop."""

    name = "decide"

    def run(self, data, rank: int = 0, world_size: int = 1):
        hashes = np.concatenate([bucket_run(np.load(self.plan.hashes_path(task), mmap_mode="r"), rank, self.plan.buckets)
                                 for task in self.plan.tasks])
        order = np.lexsort((hashes["position"], hashes["slice"], hashes["source"], hashes["lo"], hashes["hi"]))
        hashes = hashes[order]
        repeat = np.zeros(len(hashes), dtype=bool)
        repeat[1:] = (hashes["hi"][1:] == hashes["hi"][:-1]) & (hashes["lo"][1:] == hashes["lo"][:-1])
        drop = np.empty(int(repeat.sum()), dtype=_DROP)
        for column in _DROP.names:
            drop[column] = hashes[column][repeat]
        drop.sort(order=list(_DROP.names))  # each slice's drops a run, for its pack task's binary search
        _save(self.plan.drop_path(rank), drop)
        self.stat_update("duplicates", value=len(drop))
        yield from ()


class PackSlice(_PlanStep):
    """Last pass: pack the slice's stored tokens, less the dropped documents, into its own MDS parts."""

    name = "pack"

    def run(self, data, rank: int = 0, world_size: int = 1):
        plan = self.plan
        task = plan.tasks[plan.pack_ranks()[rank]]
        source = plan.spec.sources[task.source]
        out = plan.part_dir(task)
        shutil.rmtree(out, ignore_errors=True)  # a killed attempt's files (this task wrote them)
        duplicates = self._dropped(task) if plan.spec.dedup else set()
        near = near_dedup.dropped_positions(plan.work, plan.pack_ranks()[rank]) if source.near_dedup else set()
        dropped = duplicates | near
        tokens = SliceTokens(plan.tokens_dir(task), plan.settings)
        splits = pack_holding_out(lambda held_out: tokens.chunks(dropped, held_out), out, plan.spec.seq_len,
                                  plan.settings.dtype, plan.settings.val_fraction)
        filters = tokens.read["filters"]
        filters["duplicate"] += len(duplicates)
        filters["near_duplicate"] = len(near - duplicates)
        kept = tokens.kept(dropped)
        write_json_atomic(out / COUNTS_FILE, {**tokens.read, **kept, "splits": splits, "filters": filters})
        self.stat_update("documents", value=kept["documents"])
        yield from ()

    def _dropped(self, task: Task) -> set[int]:
        positions: set[int] = set()
        for bucket in range(self.plan.buckets):
            drop = np.load(self.plan.drop_path(bucket), mmap_mode="r")
            positions.update(run_of(drop, _slice_key, (task.source, task.part.index))["position"].tolist())
        return positions


def _slice_key(row: np.void) -> tuple[int, int]:
    return int(row["source"]), int(row["slice"])


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as out:  # whole or absent: a later pass reads it
        np.save(out, array)


def passes(plan: BuildPlan) -> list[str]:
    wanted = {"scan": True, "decide": plan.spec.dedup, "near_pairs": plan.near,
              "near_clusters": plan.near, "pack": True}
    return [name for name in PASSES if wanted[name]]


def pipeline(plan: BuildPlan, name: str) -> list[PipelineStep]:
    """The steps of one pass's tasks."""
    if name == "scan":
        return [ScanSlice(plan)] + ([near_dedup.signature_step(plan.work, plan.spec.minhash)] if plan.near else [])
    if name == "near_pairs":
        return [near_dedup.pairs_step(plan.work, plan.spec.minhash)]
    if name == "near_clusters":
        return [near_dedup.ClusterNearDuplicates(plan.work)]
    return [{"decide": DecideBucket, "pack": PackSlice}[name](plan)]


def run_local(plan: BuildPlan, workers: int) -> None:
    """Run the passes with datatrove's LocalPipelineExecutor, `workers` tasks at a time."""
    from datatrove.executor import LocalPipelineExecutor

    _run_passes(plan, LocalPipelineExecutor, workers, start_method="fork")


def run_ray(plan: BuildPlan, workers: int) -> None:
    """Run the passes on the Ray cluster this process is connected to (datatrove's RayPipelineExecutor),
    `workers` tasks at a time (-1: as many as the cluster runs)."""
    from datatrove.executor import RayPipelineExecutor

    _run_passes(plan, RayPipelineExecutor, workers)


def _run_passes(plan: BuildPlan, executor_type: type, workers: int, **options) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the tasks are the parallelism
    for name in passes(plan):
        tasks = plan.pass_tasks(name)
        executor_type(pipeline=pipeline(plan, name), tasks=tasks, workers=tasks if workers < 0 else min(workers, tasks),
                      logging_dir=str(Path(plan.work) / name), **options).run()
        _check_complete(plan, name)


def _check_complete(plan: BuildPlan, name: str) -> None:
    from codemix.errors import CodemixError

    done = len(list((Path(plan.work) / name / "completions").glob("*")))
    if done < plan.pass_tasks(name):
        raise CodemixError(f"{Path(plan.work) / name}: {plan.pass_tasks(name) - done} {name} task(s) failed; "
                           f"their logs are in {Path(plan.work) / name / 'logs'}")


def remove_task_data(plan: BuildPlan) -> None:
    """The tasks' outputs (hash buckets, token stores, drop lists, packed parts) once the sources hold them."""
    for path in ("hashes", "tokens", "drop", "parts", near_dedup.folder(plan.work)):
        shutil.rmtree(Path(plan.work) / path, ignore_errors=True)


def write_plan_note(plan: BuildPlan) -> None:
    """What the work folder is for, so a person finding it knows it is a resumable build's."""
    note = {"passes": passes(plan), "tasks": {name: plan.pass_tasks(name) for name in passes(plan)},
            "sources": [plan.spec.sources[i].name for i in sorted(plan.build)]}
    Path(plan.work).mkdir(parents=True, exist_ok=True)
    (Path(plan.work) / "plan.json").write_text(json.dumps(note, indent=1))


@dataclass(frozen=True)
class SlurmSettings:
    partition: str
    time: str = "24:00:00"  # per task
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    max_running: int = -1  # tasks of an array running at once; -1: as many as SLURM allows
    env_command: str = ""  # how a job activates codemix; default: this interpreter's virtual environment


class FinishBuild(PipelineStep):
    """The last job: merge the parts and write corpus.json (the closure the build hands over)."""

    type = "codemix"
    name = "finish"

    def __init__(self, finish):
        super().__init__()
        self.finish = finish

    def run(self, data, rank: int = 0, world_size: int = 1):
        self.finish()
        yield from ()


def submit_slurm(plan: BuildPlan, settings: SlurmSettings, finish) -> str:
    """Write and submit (sbatch) one job array per pass and the finishing job, chained by
    dependencies; returns the finishing job's id. Re-submitting skips the tasks already complete."""
    import sys

    from datatrove.executor import SlurmPipelineExecutor

    activate = settings.env_command or f"source {Path(sys.prefix) / 'bin' / 'activate'}"
    previous = None
    for name, steps in [*((n, pipeline(plan, n)) for n in passes(plan)), ("finish", [FinishBuild(finish)])]:
        previous = SlurmPipelineExecutor(
            pipeline=steps, tasks=1 if name == "finish" else plan.pass_tasks(name), time=settings.time,
            partition=settings.partition, cpus_per_task=settings.cpus_per_task,
            mem_per_cpu_gb=settings.mem_per_cpu_gb, workers=settings.max_running, job_name=f"codemix-{name}",
            env_command=f"{activate}\nexport TOKENIZERS_PARALLELISM=false", depends=previous,
            logging_dir=str(Path(plan.work) / name), slurm_logs_folder=str(Path(plan.work) / "slurm" / name),
            with_srun=False,
        )
    previous.run()  # launches the ones it depends on first
    return str(previous.job_id)
