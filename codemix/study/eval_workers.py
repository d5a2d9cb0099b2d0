"""A study's evaluations in worker processes, one stage at a time each, one torch thread each.

Scoring a small model on CPU is many small operations that a second intra-op thread only slows
(codemix.study.driver.one_torch_thread), so one evaluation uses one core; on a 2-core machine the
tiny study's 20 evaluations took 10 minutes one after another. Separate processes (spawned: a forked
torch is unsafe) use every core without sharing a thread pool. Each stage writes only its own
eval/results.json, atomically, so workers never touch the same file.

Each worker has a pipe of its own to the parent (tasks one way; progress lines and the outcome the
other), so a worker stopped mid-write cannot leave a lock held that the others wait on, as a shared
multiprocessing queue can. Ctrl-C is the parent's: workers ignore SIGINT, the parent's stop check
ends them (SIGTERM), and a worker stopped mid-stage unwinds so its sandbox cleans up; that stage is
evaluated again on the next run. A parent killed outright leaves workers that exit at their next
message."""

import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

Say = Callable[[str], None]
StopCheck = Callable[[], None]
Progress = Callable[[str], None]
Job = Callable[[Any, Progress], None]  # a module-level function (workers import it by name)

POLL_S = 0.2
STOP_WAIT_S = 10.0  # for a stopped worker to unwind before it is killed
_in_task = False


def default_workers() -> int:
    """One worker per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True)
class Task:
    label: str  # prefixes its progress lines
    job: Job
    argument: Any  # picklable


def run_tasks(tasks: Sequence[Task], workers: int, say: Say, stop_check: StopCheck = lambda: None) -> None:
    """Run every task, `workers` at a time; in this process when one worker (or one task) is enough. The
    first task's exception is raised here once the tasks already running finish; no new ones start."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            stop_check()
            say(f"{task.label} ...")
            task.job(task.argument, lambda line: say(f"    {line}"))
        return
    context = multiprocessing.get_context("spawn")
    count = min(workers, len(tasks))
    say(f"{len(tasks)} evaluations on {count} worker processes")
    pipes, processes = [], []
    try:
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=_work, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            pipes.append(ours)
            processes.append(process)
        _schedule(list(tasks), dict(zip(pipes, processes)), say, stop_check)
    finally:
        _stop(processes)


def _schedule(queue: list[Task], workers: dict[Connection, multiprocessing.Process], say: Say,
              stop_check: StopCheck) -> None:
    running: dict[Connection, Task] = {}
    failure: BaseException | None = None
    for pipe in workers:
        running[pipe] = queue.pop(0)
        pipe.send(running[pipe])
    while running:
        stop_check()
        for pipe in wait(list(running), timeout=POLL_S):
            task = running[pipe]
            try:
                kind, value = pipe.recv()
            except EOFError:
                workers[pipe].join(STOP_WAIT_S)  # its pipe closes just before it is reaped
                raise RuntimeError(f"{task.label}: its worker process ended "
                                   f"(exit code {workers[pipe].exitcode})") from None
            if kind == "line":
                say(f"{task.label}: {value}")
                continue
            del running[pipe]
            if kind == "error" and failure is None:
                failure = value
            if queue and failure is None:
                running[pipe] = queue.pop(0)
                pipe.send(running[pipe])
    if failure is not None:
        raise failure


def _stop(processes: list[multiprocessing.Process]) -> None:
    """End the workers: idle ones exit at once; one mid-task unwinds (SystemExit) or is killed."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(STOP_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join()


def _work(pipe: Connection) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, _exit_on_term)
    torch.set_num_threads(1)
    global _in_task
    while True:
        try:
            task: Task = pipe.recv()
        except EOFError:  # the parent is gone
            return
        _in_task = True
        try:
            pipe.send(("line", "started"))
            task.job(task.argument, lambda line: pipe.send(("line", line)))
            outcome: tuple[str, Any] = ("done", None)
        except Exception as err:
            outcome = ("error", _picklable(err))
        finally:
            _in_task = False
        pipe.send(outcome)


def _exit_on_term(signum: int, frame: object) -> None:
    if _in_task:
        raise SystemExit(128 + signum)  # unwind: finally blocks (the sandbox's clean-up) run
    os._exit(128 + signum)  # idle: nothing to clean up, and no traceback to print


def _picklable(err: Exception) -> Exception:
    """The exception itself when it survives pickling, else a RuntimeError with its traceback."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError("".join(traceback.format_exception(err)))
