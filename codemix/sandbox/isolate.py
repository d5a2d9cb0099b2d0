"""Run model-written Python programs in isolated processes with hard limits, many at a time.

Each program runs through launcher.py. As root (how CI runs) it gets its own network, mount,
IPC and PID namespaces, a private tmpfs as its only writable directory, the checkout and home
directories hidden, and a uid of its own leased for the run: RLIMIT_NPROC is counted per uid (root ignores it), so a dedicated uid makes the process
limit hold and keeps concurrent programs from signalling each other. Without root it falls back to
rlimits, a scratch directory, its own session and an in-process socket guard; `isolation` says
which one a Sandbox got. Whatever the program does, the outcome is a SandboxResult, never an
exception in the caller."""

import os
import pwd
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from codemix.errors import CodemixError

LAUNCHER = Path(__file__).with_name("launcher.py")
SETUP_FAILED = 125
ISOLATIONS = ("namespaced", "plain")
# Leased sandbox uids: above any uid a distribution hands out, below the 32-bit ceiling.
UID_BASE, UID_COUNT = 1_900_000_000, 256
LEASE_PREFIX = "\0codemix-sandbox-uid-"  # abstract unix socket names: no file, gone with the holder
SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp/sandbox",
               "TMPDIR": "/tmp/sandbox"}
# Host directories a namespaced program sees empty: this checkout (sources, data, runs) and home
# dirs. The rest of the host stays readable (read-only): the interpreter and its libraries live there.
HIDDEN = (str(Path(__file__).resolve().parents[2]), "/root", "/home")


class SandboxError(CodemixError):
    """The sandbox itself could not be set up (never raised for what a program does)."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512  # address space per process
    file_mb: int = 16  # largest file a program may write
    processes: int = 8  # tasks (processes + threads) for the program's uid
    output_bytes: int = 1 << 20  # stdout + stderr kept; more kills the program
    scratch_mb: int = 64


@dataclass(frozen=True)
class SandboxResult:
    status: str  # "passed" | "failed" | "timeout" | "output_limit" | "killed"
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class Sandbox:
    def __init__(self, limits: Limits | None = None, python: str | None = None, workers: int = 2,
                 isolation: str | None = None):
        self.limits = limits or Limits()
        self.workers = max(1, workers)
        self.isolation = isolation or ("namespaced" if os.geteuid() == 0 else "plain")
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation {self.isolation!r} is not one of {ISOLATIONS}")
        self.python = python or _default_python(self.isolation)

    def describe(self) -> dict:
        """What a results file records about how programs were run."""
        return {"isolation": self.isolation, "python": self.python, "limits": asdict(self.limits)}

    def run(self, source: str) -> SandboxResult:
        started = time.monotonic()
        program, refusal = self._encoded(source)
        if refusal is not None:
            return SandboxResult("failed", None, "", refusal, time.monotonic() - started)
        if self.isolation == "namespaced":
            with _UidLease() as uid:
                result = self._launch(program, uid, cwd=None, started=started)
                _reap_uid(uid)
            return result
        with tempfile.TemporaryDirectory(prefix="codemix-sandbox-") as scratch:
            return self._launch(program, None, cwd=scratch, started=started)

    def run_many(self, sources: Iterable[str]) -> list[SandboxResult]:
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(self.run, sources))

    def _encoded(self, source: str) -> tuple[bytes, str | None]:
        """The program as UTF-8 bytes, or why it cannot be run (a reason, never an exception)."""
        try:
            program = source.encode()
        except UnicodeEncodeError as err:
            return b"", (f"sandbox: program source is not valid UTF-8 text ({err.reason} "
                         f"{source[err.start:err.end]!r} at character {err.start})")
        if len(program) > self.limits.scratch_mb << 20:
            return b"", (f"sandbox: program source is {len(program)} bytes, more than the "
                         f"{self.limits.scratch_mb} MB scratch directory it must be written to")
        return program, None

    def _launch(self, program: bytes, uid: int | None, cwd: str | None, started: float) -> SandboxResult:
        limits = self.limits
        env = dict(SANDBOX_ENV)
        if cwd is not None:
            env.update(HOME=cwd, TMPDIR=cwd)
        nonce = secrets.token_hex(8)
        spec = {"mode": self.isolation, "uid": uid, "python": self.python, "env": env, "nonce": nonce,
                "wall_s": limits.wall_s, "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb,
                "processes": limits.processes, "scratch_mb": limits.scratch_mb,
                "hidden": _hidden_from(self.python)}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), "run", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env=env, start_new_session=True,  # its own group: killable as one, can't signal ours
        )
        try:
            proc.stdin.write(json.dumps(spec).encode() + b"\n" + program)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()  # the launcher never waits on a stdin that stays open
        try:
            stdout, stderr, cut = _collect(proc, limits.output_bytes, started + limits.wall_s)
        except BaseException:  # e.g. KeyboardInterrupt: take the launcher and program down first
            _kill_group(proc)
            proc.wait()
            raise
        if cut is not None:
            _kill_group(proc)
        returncode = proc.wait()
        if cut is None and returncode == SETUP_FAILED and f"sandbox setup failed [{nonce}]".encode() in stderr:
            raise SandboxError(f"sandbox setup failed ({self.isolation}): {stderr.decode(errors='replace')}")
        status = cut or _status(returncode)
        return SandboxResult(status, None if cut else returncode, stdout.decode(errors="replace"),
                             stderr.decode(errors="replace"), time.monotonic() - started)


def _hidden_from(python: str) -> list[str]:
    """HIDDEN less any directory the program's interpreter lives under (it must still start)."""
    homes = {Path(python).absolute(), Path(python).resolve()}
    return [path for path in HIDDEN if not any(home.is_relative_to(path) for home in homes)]


def _status(returncode: int) -> str:
    if returncode == 0:
        return "passed"
    return "killed" if returncode > 128 or returncode < 0 else "failed"


def _collect(proc: subprocess.Popen, cap: int, deadline: float) -> tuple[bytes, bytes, str | None]:
    """Read both pipes until they close, the output cap or the deadline; return why it was cut."""
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    total = 0
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _joined(chunks, proc, "timeout")
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                chunks[key.fd].append(data)
                total += len(data)
                if total > cap:
                    return _joined(chunks, proc, "output_limit")
    try:  # pipes closed, but the program may still run (it closed them itself)
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return _joined(chunks, proc, "timeout")
    return _joined(chunks, proc, None)


def _joined(chunks: dict[int, list[bytes]], proc, cut: str | None) -> tuple[bytes, bytes, str | None]:
    stdout = b"".join(chunks[proc.stdout.fileno()])
    stderr = b"".join(chunks[proc.stderr.fileno()])
    proc.stdout.close()
    proc.stderr.close()
    return stdout, stderr, cut


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


def _reap_uid(uid: int, timeout_s: float = 10.0) -> None:
    """Return the uid only once nothing of the last program is left (the PID namespace's teardown
    is asynchronous); sweep with kill(-1) as that uid if something lingers."""
    deadline = time.monotonic() + timeout_s
    while _uid_processes(uid):
        if time.monotonic() > deadline:
            raise SandboxError(f"processes of sandbox uid {uid} survived: {_uid_processes(uid)}")
        subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), "sweep", str(uid)], check=False)
        time.sleep(0.05)


class _UidLease:
    """An exclusive claim on one sandbox uid, across processes: binding an abstract unix socket
    named after it succeeds for one holder only and is released when the holder dies."""

    def __enter__(self) -> int:
        for uid in range(UID_BASE, UID_BASE + UID_COUNT):
            if _uid_is_taken(uid):
                continue
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(f"{LEASE_PREFIX}{uid}")
            except OSError:
                sock.close()
                continue
            self._sock = sock
            _reap_uid(uid)  # what a killed earlier holder left would eat this program's process budget
            return uid
        raise SandboxError(f"all {UID_COUNT} sandbox uids from {UID_BASE} are in use")

    def __exit__(self, *exc) -> None:
        self._sock.close()


@lru_cache(maxsize=None)
def _uid_is_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _default_python(isolation: str) -> str:
    """The first interpreter a sandboxed program can start: this one, unless its files sit where
    the dropped uid cannot reach them (e.g. a pyenv under root's home), then the system's."""
    candidates = [sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]
    for candidate in dict.fromkeys(c for c in candidates if c):
        if _starts(candidate, isolation):
            return candidate
    raise SandboxError(f"no Python interpreter among {candidates} starts inside the sandbox")


@lru_cache(maxsize=None)
def _starts(python: str, isolation: str) -> bool:
    probe = Sandbox(Limits(wall_s=30), python=python, workers=1, isolation=isolation)
    try:
        return probe.run("import json; print('ok')").stdout.strip() == "ok"
    except SandboxError:
        return False
