"""Launch one untrusted Python program inside its limits (run as its own process by isolate.py).

Runs with `python -I -S`, so it imports only the standard library and never codemix. Usage:
    launcher.py run CALLER_PID  (stdin: one line of JSON spec, then the program source)
    launcher.py sweep UID       (SIGKILL every process of UID, as that UID)

In "namespaced" mode (needs root) the launcher unshares network, mount, IPC and PID namespaces,
turns every mount read-only in its namespace, covers the directories the caller names (the
checkout, home directories) with empty ones, gives the program one size-capped tmpfs (its private
/tmp/sandbox, and /dev/shm) as the only place it can write, then forks the program as PID 1 of the
new PID namespace with a dedicated uid: when that process dies the kernel kills everything it
spawned, and its IPC namespace (SysV shared memory, message queues, semaphores, POSIX mqueues) goes
with it. The launcher dies with its caller (PR_SET_PDEATHSIG) and enforces the wall limit itself,
so a killed caller leaves nothing running. In "plain" mode
(not root) it applies the rlimits and a socket guard in a scratch dir the caller made.
Exit status 125 means the launcher itself could not set the sandbox up."""

import ctypes
import json
import os
import resource
import signal
import sys

SETUP_FAILED = 125
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 0x1, 0x2, 0x4, 0x8, 0x20, 0x1000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
# Per-mount flags a read-only remount must restate, else the kernel clears them.
KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 0x400,
              "nodiratime": 0x800, "relatime": 0x200000, "strictatime": 0x1000000}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MS_PROC = MS_NOSUID | MS_NODEV | MS_NOEXEC
SANDBOX_DIR = "/tmp/sandbox"
SHM_DIR = "/tmp/.shm"
PROGRAM = "program.py"
# Plain mode only: refuse sockets in-process when no network namespace can be had.
SOCKET_GUARD = (
    "import socket as _s\n"
    "def _no_network(*a, **k):\n"
    "    raise PermissionError('network access is disabled in the codemix sandbox')\n"
    "for _n in ('connect', 'connect_ex', 'bind', 'sendto'):\n"
    "    setattr(_s.socket, _n, _no_network)\n"
    "_s.create_connection = _no_network\n"
    "del _s, _n, _no_network\n"
    "import runpy\n"
    "runpy.run_path(%r, run_name='__main__')\n" % PROGRAM
)

_libc = ctypes.CDLL(None, use_errno=True)


class ProgramTooLarge(Exception):
    """The source does not fit its scratch dir: the program fails, the sandbox is fine."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _mounts() -> list[tuple[str, int]]:
    """(mount point, flags to keep) of every mount in this namespace, from /proc/self/mountinfo."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
            flags = sum(KEPT_FLAGS.get(option, 0) for option in fields[5].split(","))
            mounts.append((point, flags))
    return mounts


def _isolate_filesystem(uid: int, scratch_mb: int, hidden: list[str], source: bytes) -> None:
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)  # nothing below propagates to the host
    for point, flags in _mounts():
        try:
            _mount("none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None)
        except FileNotFoundError:
            continue  # a mount point hidden under a later mount
    for path in hidden:  # an empty read-only dir in place of each (the checkout, home dirs)
        if os.path.isdir(path):
            _mount("codemix-hidden", path, "tmpfs", MS_RDONLY | MS_PROC, "size=4k,mode=0755")
    # One tmpfs holds the scratch dir and the program's /dev/shm, so scratch_mb caps both; /tmp
    # itself stays root's and read-only to the program.
    _mount("codemix-sandbox", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,mode=0755")
    for path in (SANDBOX_DIR, SHM_DIR):
        os.mkdir(path, 0o700)
        os.chown(path, uid, uid)
    if os.path.isdir("/dev/shm"):  # else POSIX shared memory is simply unavailable
        _mount(SHM_DIR, "/dev/shm", None, MS_BIND, None)
    program = os.path.join(SANDBOX_DIR, PROGRAM)
    try:
        with open(program, "wb") as handle:
            handle.write(source)
    except OSError as err:  # the program's own size, not a broken sandbox: scored as a failure
        raise ProgramTooLarge(f"sandbox: program source ({len(source)} bytes) does not fit the scratch dir: {err}")
    os.chown(program, uid, uid)


def _apply_limits(spec: dict) -> None:
    mib = 1024 * 1024
    limits = {
        resource.RLIMIT_CPU: (spec["cpu_s"], spec["cpu_s"]),
        resource.RLIMIT_AS: (spec["memory_mb"] * mib,) * 2,
        resource.RLIMIT_FSIZE: (spec["file_mb"] * mib,) * 2,
        resource.RLIMIT_NPROC: (spec["processes"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in limits.items():
        resource.setrlimit(which, (soft, hard))


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def _exec_program(spec: dict, argv_tail: list[str]) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.execve(spec["python"], [spec["python"], "-I", *argv_tail], spec["env"])


def _run_namespaced(spec: dict, source: bytes) -> int:
    uid = spec["uid"]
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
    _isolate_filesystem(uid, spec["scratch_mb"], spec["hidden"], source)
    child = os.fork()  # PID 1 of the new PID namespace
    if child == 0:
        try:
            # A /proc of the new PID namespace: the program sees its own processes, not the host's.
            _mount("proc", "/proc", "proc", MS_PROC, None)
            _apply_limits(spec)
            _drop_privileges(uid)
            # Die with the launcher (a wall-time kill), which takes the whole namespace down; the
            # host kills the launcher's process group, which still holds this process until exec.
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
            os.chdir(SANDBOX_DIR)
            _exec_program(spec, [PROGRAM])
        except BaseException as err:  # noqa: BLE001 - any failure here is a setup failure
            _report_setup_failure(spec, err)
        os._exit(SETUP_FAILED)
    # The caller enforces the wall limit too; this holds it when the caller is gone or stuck.
    signal.signal(signal.SIGALRM, lambda *_: os.kill(child, signal.SIGKILL))  # unreaped until waited
    signal.setitimer(signal.ITIMER_REAL, spec["wall_s"])
    status = _wait_status(child)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the pid is reaped now: never signal it again
    return status


def _run_plain(spec: dict, source: bytes) -> int:
    with open(PROGRAM, "wb") as handle:
        handle.write(source)
    _apply_limits(spec)
    signal.setitimer(signal.ITIMER_REAL, spec["wall_s"])  # kept across exec: SIGALRM ends the program
    _exec_program(spec, ["-c", SOCKET_GUARD])
    return SETUP_FAILED  # not reached: execve replaced this process


def _wait_status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _sweep(uid: int) -> int:
    """kill(-1) as `uid` reaches exactly the processes that uid owns, atomically w.r.t. fork."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return 0


def _report_setup_failure(spec: dict, err: BaseException) -> None:
    # The nonce (never shown to the program) tells the caller this came from here, not the program.
    print(f"sandbox setup failed [{spec['nonce']}]: {err}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    if argv[0] == "sweep":
        return _sweep(int(argv[1]))
    # Die with the caller; a caller already gone before this line is caught by the parent check.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() != int(argv[1]):
        return SETUP_FAILED
    spec = json.loads(sys.stdin.buffer.readline())
    source = sys.stdin.buffer.read()
    try:
        if spec["mode"] == "namespaced":
            return _run_namespaced(spec, source)
        return _run_plain(spec, source)
    except ProgramTooLarge as err:
        print(err, file=sys.stderr, flush=True)
        return 1
    except OSError as err:
        _report_setup_failure(spec, err)
        return SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
