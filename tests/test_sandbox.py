"""The sandbox against hostile programs: each is contained, scored as a failure, and the programs
around it in the same batch still run and pass."""

import os
import shutil
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from codemix.sandbox.isolate import Limits, Sandbox, _uid_processes

CHECK = "\nassert add(2, 3) == 5\n"
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(Limits(wall_s=3, cpu_s=2, memory_mb=256, output_bytes=64 * 1024), workers=2)


def _program(body: str) -> str:
    return f"def add(a, b):\n{body}\n    return a + b\n" + CHECK


@pytest.fixture(scope="module")
def loopback_server():
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()


def test_good_program_passes_and_runs_as_an_unprivileged_uid(sandbox):
    result = sandbox.run(GOOD + "import os\nprint(os.getuid(), os.getcwd())" + CHECK)
    assert result.passed, result.stderr
    uid, cwd = result.stdout.split()
    if sandbox.isolation == "namespaced":
        assert int(uid) not in (0, os.getuid()) and cwd == "/tmp/sandbox"
    assert "PYTHONPATH" not in result.stdout


@pytest.fixture
def open_dir():
    """A world-writable directory outside every tmp dir (the sandbox covers those): still out of reach."""
    root = Path(__file__).resolve().parents[1] / ".codemix"
    root.mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="sandbox-target-", dir=root))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def test_hostile_programs_are_contained_and_fail_while_good_ones_pass(sandbox, open_dir, loopback_server):
    if sandbox.isolation != "namespaced":
        pytest.skip("without root a program can write wherever the user can")
    port, hits = loopback_server
    outside = open_dir / "outside.txt"
    hostile = {
        "infinite loop": _program("    while True:\n        pass"),
        "fork bomb": _program("    import os\n    while True:\n        try:\n            os.fork()\n"
                              "        except OSError:\n            pass"),
        "memory bomb": _program("    hog = []\n    while True:\n        hog.append(bytearray(1 << 24))"),
        "write outside": _program(f"    open({str(outside)!r}, 'w').write('escaped')"),
        "write tmp": _program("    open('/tmp/codemix-escaped', 'w').write('escaped')"),
        "network": _program(f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)"),
        "kill parent": _program(f"    import os, signal\n    os.kill({os.getpid()}, signal.SIGKILL)\n"
                                "    os.kill(os.getppid(), signal.SIGKILL)\n    return 0"),
        "stdout flood": _program("    import sys\n    while True:\n        sys.stdout.write('x' * 4096)"),
    }
    names = list(hostile)
    results = sandbox.run_many([GOOD + CHECK, *hostile.values(), GOOD + CHECK])
    assert results[0].passed and results[-1].passed, (results[0], results[-1])
    outcomes = dict(zip(names, results[1:-1]))
    for name, result in outcomes.items():
        assert not result.passed, name
    assert outcomes["infinite loop"].status in ("timeout", "killed")
    assert outcomes["fork bomb"].status in ("timeout", "killed")
    assert "MemoryError" in outcomes["memory bomb"].stderr
    # Read-only host file system; or, for a checkout under /tmp, not even visible (a fresh /tmp there).
    write_error = outcomes["write outside"].stderr
    assert ("Read-only file system" in write_error or "No such file" in write_error) and not outside.exists()
    assert "Error" in outcomes["write tmp"].stderr and not os.path.exists("/tmp/codemix-escaped")
    assert hits == [] and "Error" in outcomes["network"].stderr
    # In its PID namespace our pid does not even exist; without one, a foreign uid may not signal it.
    assert "ProcessLookupError" in outcomes["kill parent"].stderr  # and we are still here
    assert outcomes["stdout flood"].status == "output_limit"
    assert len(outcomes["stdout flood"].stdout) <= 64 * 1024 + 65536
    assert not _uid_processes_left()


def _uid_processes_left() -> list[int]:
    """Processes of sandbox uids that nobody holds a lease on (another test session may be running
    programs under the uids it leased right now; those are not leftovers)."""
    from codemix.sandbox.isolate import LEASE_PREFIX, UID_BASE

    left = []
    for uid in range(UID_BASE, UID_BASE + 16):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.bind(f"{LEASE_PREFIX}{uid}")
        except OSError:
            continue  # leased by a running program
        try:
            left += _uid_processes(uid)
        finally:
            probe.close()
    return left


def fork_loop(sleep_s: str) -> str:
    """A program that forks up to 32 children (each execs `sleep SLEEP_S`), prints how many it got,
    and waits for them."""
    return (
        "import os\nforked = 0\nfor _ in range(32):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        try:\n"
        f"            os.execv('/bin/sleep', ['sleep', {sleep_s!r}])\n        finally:\n            os._exit(127)\n"
        "    forked += 1\nprint(forked, flush=True)\nfor _ in range(forked):\n    os.wait()\n"
    )


def test_process_limit_stops_a_fork_loop_observed_from_outside(sandbox):
    """The fork bomb's bound, measured from the host: the program's children, counted in /proc while it
    runs, never exceed `processes` - 1 (the program is one task of its limit). As root the leased uid
    is fresh, so it gets exactly that many; a non-root user's other processes count too, so it gets
    at most that many (without the limit it would get all 32)."""
    marker = f"1.{int.from_bytes(os.urandom(3), 'big') % 1_000_000:06d}"  # seconds to sleep, unique argv
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=sandbox.run(fork_loop(marker))))
    runner.start()
    seen, peak = set(), 0
    while runner.is_alive():
        alive = _pids_with_arg(marker)
        seen.update(alive)
        peak = max(peak, len(alive))
        time.sleep(0.02)
    runner.join()
    result = outcome["result"]
    assert result.passed, result.stderr
    forked = int(result.stdout)
    assert len(seen) == peak == forked  # every child the program counted was seen, all alive at once
    assert forked <= sandbox.limits.processes - 1
    if sandbox.isolation == "namespaced":
        assert forked == sandbox.limits.processes - 1


def test_file_size_and_scratch_dir_are_capped(sandbox):
    big = sandbox.run("open('big', 'wb').write(b'x' * (32 << 20))")
    assert not big.passed and "File too large" in big.stderr
    small = sandbox.run("open('small', 'w').write('ok')\nprint(open('small').read())")
    assert small.passed and small.stdout.strip() == "ok"


def test_nothing_but_loopback_in_the_network_namespace(sandbox):
    if sandbox.isolation != "namespaced":
        pytest.skip("plain isolation guards sockets in-process only")
    result = sandbox.run("import socket\nprint(socket.if_nameindex())")
    assert result.passed and "eth" not in result.stdout and "'lo'" in result.stdout
    assert socket.if_nameindex()  # the host still has its interfaces


def test_plain_isolation_without_namespaces_still_guards_and_limits():
    """The fallback for non-root users (only bounded programs here: as root it cannot cap processes)."""
    plain = Sandbox(Limits(wall_s=2, cpu_s=2, output_bytes=4096), isolation="plain")
    ok = plain.run(GOOD + "import os\nprint(os.getcwd())" + CHECK)
    assert ok.passed and "codemix-sandbox-" in ok.stdout
    network = plain.run("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)")
    assert network.status == "failed" and "network access is disabled" in network.stderr
    assert plain.run("while True:\n    pass").status in ("timeout", "killed")
    assert plain.run("print('x' * 100000)").status == "output_limit"


def test_program_sees_only_its_own_processes_and_cannot_fake_a_setup_failure(sandbox):
    if sandbox.isolation != "namespaced":
        pytest.skip("needs a PID namespace")
    listing = sandbox.run("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert listing.passed and listing.stdout.strip() == "[1]"
    fake = sandbox.run("import sys\nprint('sandbox setup failed [0000]: no', file=sys.stderr)\nsys.exit(125)")
    assert fake.status == "failed" and fake.returncode == 125


IPC_PRELUDE = (
    "import ctypes, os, sys, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.shmat.restype = ctypes.c_void_p\nIPC_CREAT = 0o1000\n"
)
SECRET = b"SECRET-FROM-A"


def _sysv_keys(kind: str) -> set[int]:
    """Keys of the host's SysV segments or message queues (the first column of /proc/sysvipc/*)."""
    with open(f"/proc/sysvipc/{kind}") as table:
        return {int(line.split()[0]) for line in list(table)[1:]}


def _host_mqueue_exists(name: bytes) -> bool:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.mq_open(name, os.O_RDONLY)
    if fd >= 0:
        libc.mq_close(fd)
    return fd >= 0


def test_ipc_is_private_to_each_program_and_dies_with_it(sandbox):
    """SysV shm, SysV message queues, POSIX mqueues and /dev/shm: a writer's objects are neither
    seen by a program running beside it nor left in the host after it."""
    if sandbox.isolation != "namespaced":
        pytest.skip("needs an IPC namespace")
    key = int.from_bytes(os.urandom(3), "big") + 1
    mqueue = f"/codemix-sandbox-{key}".encode()
    writer = IPC_PRELUDE + (
        f"shmid = libc.shmget({key}, 1 << 20, IPC_CREAT | 0o666)\nassert shmid >= 0, ctypes.get_errno()\n"
        f"ctypes.memmove(libc.shmat(shmid, None, 0), {SECRET!r}, {len(SECRET)})\n"
        f"assert libc.msgget({key}, IPC_CREAT | 0o666) >= 0\n"
        f"assert libc.mq_open({mqueue!r}, os.O_CREAT | os.O_RDWR, 0o666, None) >= 0, ctypes.get_errno()\n"
        f"open('/dev/shm/codemix-secret', 'wb').write({SECRET!r})\n"
        "print('wrote', flush=True)\ntime.sleep(2)\n"
    )
    reader = IPC_PRELUDE + (
        "time.sleep(0.5)\n"
        f"shmid = libc.shmget({key}, 0, 0)\n"
        f"print('shm', shmid >= 0 and ctypes.string_at(libc.shmat(shmid, None, 0), {len(SECRET)}))\n"
        f"print('msg', libc.msgget({key}, 0) >= 0)\n"
        f"print('mqueue', libc.mq_open({mqueue!r}, os.O_RDONLY) >= 0)\n"
        "print('devshm', os.listdir('/dev/shm'))\n"
    )
    shm_before, msg_before = _sysv_keys("shm"), _sysv_keys("msg")
    host_shm = set(os.listdir("/dev/shm"))
    wrote, read = sandbox.run_many([writer, reader])
    assert wrote.passed and wrote.stdout == "wrote\n", wrote.stderr
    assert read.passed, read.stderr
    assert SECRET.decode() not in read.stdout
    assert read.stdout.split("\n")[:4] == ["shm False", "msg False", "mqueue False", "devshm []"]
    assert key not in _sysv_keys("shm") and key not in _sysv_keys("msg")
    assert _sysv_keys("shm") <= shm_before | _sysv_keys("shm") - {key}  # nothing of ours left
    assert not _host_mqueue_exists(mqueue)
    assert "codemix-secret" not in set(os.listdir("/dev/shm")) - host_shm


def test_unrunnable_sources_are_failed_results_and_the_batch_survives(sandbox):
    surrogate, oversized = "print('\udcff')", "x = 1\n" * ((sandbox.limits.scratch_mb << 20) // 6 + 1)
    results = sandbox.run_many([GOOD + CHECK, surrogate, oversized, GOOD + CHECK])
    assert results[0].passed and results[-1].passed
    bad, big = results[1:3]
    assert bad.status == "failed" and bad.returncode is None and "not valid UTF-8" in bad.stderr
    assert big.status == "failed" and big.returncode is None and "more than the 64 MB scratch" in big.stderr


def _pids_with_arg(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0"):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def test_a_killed_caller_leaves_no_launcher_or_program_behind(sandbox):
    if sandbox.isolation != "namespaced":
        pytest.skip("needs leased uids")
    import signal
    import subprocess
    import sys

    marker = str(900_000 + int.from_bytes(os.urandom(2), "big"))
    sleeper = f"import os\nos.execv('/bin/sleep', ['sleep', '{marker}'])\n"
    forker = ("import os\nfor _ in range(3):\n    if os.fork() == 0:\n"
              f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\nos.execv('/bin/sleep', ['sleep', '{marker}'])\n")
    caller = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom codemix.sandbox.isolate import Limits, Sandbox\n"
        "Sandbox(Limits(wall_s=600, cpu_s=2), workers=2).run_many([sys.argv[1], sys.argv[2]])\n"),
        sleeper, forker])
    deadline = time.monotonic() + 120  # a bound on the wait, not a timing claim
    while len(_pids_with_arg(marker)) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    programs = _pids_with_arg(marker)
    assert len(programs) == 5, programs
    uids = {os.stat(f"/proc/{pid}").st_uid for pid in programs}
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    def left() -> list[int]:  # the programs, and anything else of their uids (teardown is async)
        return _pids_with_arg(marker) + [pid for uid in uids for pid in _uid_processes(uid)]

    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left()  # long before their 600 s wall limit
    result = sandbox.run(fork_loop("0.2"))
    assert result.passed and int(result.stdout) == sandbox.limits.processes - 1


def test_the_next_lease_of_a_uid_kills_what_a_dead_holder_left(sandbox):
    """Survivors of an older run under the lowest free uid: the next program leasing it gets its
    whole fork budget, and the survivors are gone."""
    if sandbox.isolation != "namespaced":
        pytest.skip("needs leased uids")
    import subprocess

    from codemix.sandbox.isolate import LEASE_PREFIX, UID_BASE

    for uid in range(UID_BASE, UID_BASE + 16):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.bind(f"{LEASE_PREFIX}{uid}")
        except OSError:
            continue
        probe.close()
        break
    survivors = [subprocess.Popen(["/bin/sleep", "600"], user=uid, group=uid, extra_groups=[]) for _ in range(3)]
    reapers = [threading.Thread(target=survivor.wait) for survivor in survivors]  # as init would
    for reaper in reapers:
        reaper.start()
    try:
        result = sandbox.run(fork_loop("0.2"))
        assert result.passed and int(result.stdout) == sandbox.limits.processes - 1
        for reaper in reapers:
            reaper.join()
        assert [survivor.returncode for survivor in survivors] == [-9] * 3
    finally:
        for survivor in survivors:
            survivor.kill()


def test_the_checkout_and_home_dirs_are_hidden(sandbox):
    if sandbox.isolation != "namespaced":
        pytest.skip("needs a mount namespace")
    from codemix.sandbox.isolate import _hidden_from

    checkout = Path(__file__).resolve().parents[1]
    if str(checkout) not in _hidden_from(sandbox.python):
        pytest.skip("the program's interpreter lives in the checkout, which must then stay visible")
    assert (checkout / "README.md").exists()
    result = sandbox.run(f"import os\nprint(os.listdir({str(checkout)!r}), os.listdir('/root'))\n"
                         f"open({str(checkout / 'README.md')!r})")
    assert result.status == "failed" and result.stdout.strip() == "[] []"
    assert "FileNotFoundError" in result.stderr


def test_the_launcher_holds_the_wall_limit_without_its_caller(sandbox):
    """A caller that never cuts the program (stuck, or gone): the launcher ends it at wall_s itself."""
    if sandbox.isolation != "namespaced":
        pytest.skip("needs leased uids")
    import json
    import subprocess
    import sys

    from codemix.sandbox.isolate import LAUNCHER, SANDBOX_ENV, _UidLease

    with _UidLease() as uid:
        spec = {"mode": "namespaced", "uid": uid, "python": sandbox.python, "env": SANDBOX_ENV, "nonce": "0",
                "wall_s": 1, "cpu_s": 60, "memory_mb": 256, "file_mb": 1, "processes": 4, "scratch_mb": 1,
                "hidden": []}
        launcher = subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), "run", str(os.getpid())],
                                  input=json.dumps(spec).encode() + b"\nimport time\ntime.sleep(600)\n",
                                  capture_output=True, timeout=300)
    assert launcher.returncode == 128 + 9, launcher.stderr
