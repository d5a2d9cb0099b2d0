"""codemix.study.eval_workers: tasks in spawned worker processes, their progress, errors and Ctrl-C."""

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from codemix.study.eval_workers import Task, run_tasks


def write_pid(path: Path, progress) -> None:
    progress(f"writing {path.name}")
    path.write_text(str(os.getpid()))


def fail(message: str, progress) -> None:
    raise ValueError(message)


def wait_then_mark(path: Path, progress) -> None:
    try:
        progress("waiting")
        time.sleep(60)
    finally:  # a worker stopped by the pool unwinds (SIGTERM -> SystemExit)
        path.write_text("unwound")


def test_tasks_run_in_worker_processes_and_their_progress_comes_back(tmp_path):
    lines: list[str] = []
    paths = [tmp_path / f"{n}.pid" for n in range(3)]
    run_tasks([Task(f"task {n}", write_pid, path) for n, path in enumerate(paths)], 2, lines.append)
    pids = {int(path.read_text()) for path in paths}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert lines[0] == "3 evaluations on 2 worker processes"
    assert {f"task {n}: started" for n in range(3)} | {f"task {n}: writing {n}.pid" for n in range(3)} <= set(lines)
    assert not multiprocessing.active_children()


def test_one_worker_runs_in_this_process(tmp_path):
    lines: list[str] = []
    run_tasks([Task("only", write_pid, tmp_path / "a.pid"), Task("next", write_pid, tmp_path / "b.pid")], 1, lines.append)
    assert {int((tmp_path / name).read_text()) for name in ("a.pid", "b.pid")} == {os.getpid()}
    assert lines == ["only ...", "    writing a.pid", "next ...", "    writing b.pid"]


def test_a_failing_task_raises_in_the_parent(tmp_path):
    with pytest.raises(ValueError, match="no such stage"):
        run_tasks([Task("bad", fail, "no such stage"), Task("good", write_pid, tmp_path / "a.pid")], 2, lambda line: None)
    assert (tmp_path / "a.pid").is_file()  # the others still ran
    assert not multiprocessing.active_children()


def test_ctrl_c_stops_the_workers_mid_task_and_they_clean_up(tmp_path):
    marks = [tmp_path / "a.mark", tmp_path / "b.mark"]
    started = []

    def stop_check() -> None:
        if len(started) == 2:  # both workers are inside their task: the user presses Ctrl-C
            raise KeyboardInterrupt

    def say(line: str) -> None:
        if line.endswith(": waiting"):
            started.append(line)

    clock = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_tasks([Task(mark.name, wait_then_mark, mark) for mark in marks] + [Task("never", write_pid, tmp_path / "c.pid")],
                  2, say, stop_check)
    assert time.monotonic() - clock < 30  # not the tasks' 60 s
    assert not multiprocessing.active_children()
    assert [mark.read_text() for mark in marks] == ["unwound", "unwound"]
    assert not (tmp_path / "c.pid").exists()


def kill_myself(argument: None, progress) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_outright_is_named_and_the_rest_stopped(tmp_path):
    with pytest.raises(RuntimeError, match=r"^doomed: its worker process ended \(exit code -9\)"):
        run_tasks([Task("doomed", kill_myself, None), Task("slow", wait_then_mark, tmp_path / "a.mark")], 2,
                  lambda line: None)
    assert not multiprocessing.active_children()


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="at least 1, not 0"):
        run_tasks([], 0, print)
