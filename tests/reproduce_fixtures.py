"""`smoke_reproduction`: `codemix reproduce recipes/tiny --smoke`, run for real once per test session in
its own home (the quickstart corpus is built there), and interrupted on the way:

1. as soon as its first stage has completed, the run gets SIGINT (Ctrl-C) and must stop;
2. the same command again must reuse that stage, train the rest, evaluate every stage and report;
3. a third time, everything is reused and only the report is written again.

Tests read what the three runs printed and left on disk."""

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    seconds: float


@dataclass(frozen=True)
class Reproduction:
    home: Path
    report: Path
    interrupted: Run
    resumed: Run
    repeated: Run
    completed_when_interrupted: list[str]  # stage identities complete after the interrupted run
    results_mtimes: dict[str, int]  # stage identity -> its eval/results.json mtime after the resumed run

    @property
    def stage_index(self) -> Path:
        return self.home / "runs" / "_stages"


def reproduce_command(home: Path) -> list[str]:
    return [sys.executable, "-m", "codemix.cli", "reproduce", "recipes/tiny", "--smoke", "--home", str(home)]


def _start(home: Path, log: Path) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(reproduce_command(home), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, time.monotonic()


def _finish(process: subprocess.Popen, started: float, log: Path) -> Run:
    process.wait(timeout=RUN_TIMEOUT_S)
    return Run(process.returncode, log.read_text(), round(time.monotonic() - started, 1))


def _completed(stage_index: Path) -> list[str]:
    return sorted(entry.name for entry in stage_index.iterdir()) if stage_index.is_dir() else []


def _interrupt_after_first_stage(home: Path, log: Path) -> Run:
    process, started = _start(home, log)
    try:
        while process.poll() is None and not _completed(home / "runs" / "_stages"):
            time.sleep(0.5)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        return _finish(process, started, log)
    finally:
        if process.poll() is None:
            process.kill()


def _run(home: Path, log: Path) -> Run:
    return _finish(*_start(home, log), log)


@pytest.fixture(scope="session")
def smoke_reproduction(isolated_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Reproduction:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _reproduce(tmp_path_factory.mktemp("reproduce"))
    # Under `make test`'s two workers the first to ask builds it, the other waits and reads it back.
    root = tmp_path_factory.getbasetemp().parent / "smoke-reproduction"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = root / "reproduction.json"
        if not saved.is_file():
            saved.write_text(json.dumps(dataclasses.asdict(_reproduce(root)), default=str))
        return _read(json.loads(saved.read_text()))


def _reproduce(root: Path) -> Reproduction:
    home = root / "home"
    interrupted = _interrupt_after_first_stage(home, root / "interrupted.log")
    completed = _completed(home / "runs" / "_stages")
    resumed = _run(home, root / "resumed.log")
    mtimes = {identity: (home / "runs" / "_stages" / identity / "eval" / "results.json").stat().st_mtime_ns
              for identity in _completed(home / "runs" / "_stages")
              if (home / "runs" / "_stages" / identity / "eval" / "results.json").is_file()}
    repeated = _run(home, root / "repeated.log")
    return Reproduction(home, home / "reports" / "tiny-smoke", interrupted, resumed, repeated, completed, mtimes)


def _read(saved: dict) -> Reproduction:
    runs = {name: Run(**saved[name]) for name in ("interrupted", "resumed", "repeated")}
    return Reproduction(Path(saved["home"]), Path(saved["report"]), **runs,
                        completed_when_interrupted=saved["completed_when_interrupted"],
                        results_mtimes=saved["results_mtimes"])
