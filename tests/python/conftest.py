"""Shared fixtures and helpers for the npyfs Python test suite.

* ``npyfs``   - session fixture: path of the release binary (``NPYFS_BIN`` or
                ``target/release/npyfs``; built with cargo when absent).
* ``mount``   - function fixture: ``with mount(source) as mnt:`` mounts SOURCE
                on a fresh directory under ``tmp_path`` and always unmounts.
* ``run_cli`` - run ``npyfs ARGS...`` and capture its output (text).

Every mount made through these helpers is registered; a per-test watchdog
SIGKILLs the daemons of registered mounts when a test runs too long, so a
hung FUSE request turns into a failing test instead of a hung suite.  The
finalizers then clear the stale mount with ``npyfs unmount`` and, failing
that, ``umount -l``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Seconds a single test may take before the watchdog kills our daemons.
TEST_TIMEOUT = float(os.environ.get("NPYFS_TEST_TIMEOUT", "90"))
# Seconds a `npyfs mount` (daemon mode) may take to come back.  After one
# mount timed out, later mounts get only MOUNT_TIMEOUT_AFTER_HANG seconds, so
# a daemon mode that never returns fails the suite quickly instead of slowly.
MOUNT_TIMEOUT = 30
MOUNT_TIMEOUT_AFTER_HANG = 3
_MOUNT_HUNG: list[bool] = []

# mountpoint (str) -> set of pids we consider ours for it (foreground daemons)
_ACTIVE: dict[str, set[int]] = {}
_ACTIVE_LOCK = threading.Lock()


# --------------------------------------------------------------------------
# binary
# --------------------------------------------------------------------------

_BIN_CACHE: list[str] = []


def npyfs_bin() -> str:
    """Path of the npyfs binary; builds the release binary if needed."""
    if _BIN_CACHE:
        return _BIN_CACHE[0]
    env = os.environ.get("NPYFS_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.fail(f"NPYFS_BIN={env} does not exist", pytrace=False)
    else:
        path = REPO / "target" / "release" / "npyfs"
        if not path.is_file():
            print("npyfs binary missing: running cargo build --release", file=sys.stderr)
            r = subprocess.run(
                ["cargo", "build", "--release"], cwd=REPO, capture_output=True, text=True
            )
            if r.returncode != 0 or not path.is_file():
                pytest.fail(
                    "cargo build --release failed:\n" + r.stderr[-4000:], pytrace=False
                )
    _BIN_CACHE.append(str(path))
    return str(path)


@pytest.fixture(scope="session")
def npyfs() -> str:
    return npyfs_bin()


def run_cli(*args, timeout: float = 60, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run `npyfs ARGS...`, capturing stdout/stderr as text."""
    cmd = [npyfs_bin(), *map(str, args)]
    kw.setdefault("stdin", subprocess.DEVNULL)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        )
    return r


@pytest.fixture(name="run_cli")
def run_cli_fixture(npyfs):
    return run_cli


# --------------------------------------------------------------------------
# mount table / process helpers
# --------------------------------------------------------------------------


def _unescape_mountinfo(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1 : i + 4].isdigit() and len(s[i + 1 : i + 4]) == 3:
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [_unescape_mountinfo(line.split()[4]) for line in f if line.strip()]


def mountinfo_line(mnt) -> str | None:
    target = os.path.realpath(str(mnt))
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if _unescape_mountinfo(line.split()[4]) == target:
                return line.rstrip("\n")
    return None


def is_mounted(mnt) -> bool:
    return mountinfo_line(mnt) is not None


def wait_until(pred, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def daemon_pids(mnt) -> list[int]:
    """Live npyfs processes whose command line mounts MNT."""
    want = {str(mnt), os.path.realpath(str(mnt))}
    bin_name = os.path.basename(npyfs_bin())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        argv = proc_cmdline(int(entry))
        # argv[0] is the binary; argv[1] too when it is run by an interpreter
        if not argv or bin_name not in {os.path.basename(a) for a in argv[:2]}:
            continue
        if "mount" in argv and want & set(argv) and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def _kill_quietly(pid: int, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def force_unmount(mnt, *, grace: float = 5.0) -> None:
    """Unmount MNT by every means: `npyfs unmount`, then `umount -l`.

    Afterwards wait for the daemons of MNT to exit, SIGKILLing stragglers.
    Never raises.
    """
    mnt = str(mnt)
    pids = set(daemon_pids(mnt)) if _BIN_CACHE else set()
    with _ACTIVE_LOCK:
        pids |= _ACTIVE.pop(mnt, set())
    if is_mounted(mnt):
        with contextlib.suppress(Exception):
            subprocess.run(
                [npyfs_bin(), "unmount", mnt],
                capture_output=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
    for _ in range(3):
        if not is_mounted(mnt):
            break
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=20)
        with contextlib.suppress(Exception):
            subprocess.run(["fusermount3", "-uz", mnt], capture_output=True, timeout=20)
    if not wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=grace):
        for p in pids:
            _kill_quietly(p)
        wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=grace)


def register_mount(mnt, pid: int | None = None) -> None:
    with _ACTIVE_LOCK:
        s = _ACTIVE.setdefault(str(mnt), set())
        if pid is not None:
            s.add(pid)


def unregister_mount(mnt) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE.pop(str(mnt), None)


def _watchdog_fire(nodeid: str) -> None:
    with _ACTIVE_LOCK:
        active = {m: set(p) for m, p in _ACTIVE.items()}
    sys.stderr.write(
        f"\n[npyfs watchdog] {nodeid} exceeded {TEST_TIMEOUT:.0f}s; "
        f"killing daemons of {sorted(active)}\n"
    )
    for mnt, pids in active.items():
        for p in pids | set(daemon_pids(mnt)):
            _kill_quietly(p)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    timer = threading.Timer(TEST_TIMEOUT, _watchdog_fire, args=(item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# --------------------------------------------------------------------------
# mounting
# --------------------------------------------------------------------------


class MountError(AssertionError):
    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result


@contextlib.contextmanager
def mounted(source, mnt, *extra):
    """Mount SOURCE on MNT (daemon mode), yield MNT, always unmount.

    The daemon's output goes to files, not pipes, so that a daemon that keeps
    inherited pipes open cannot stall unrelated tests (test_cli checks the
    pipe behaviour on its own).
    """
    mnt = Path(mnt)
    mnt.mkdir(parents=True, exist_ok=True)
    out_path = mnt.parent / f".{mnt.name}.mount.out"
    err_path = mnt.parent / f".{mnt.name}.mount.err"
    register_mount(mnt)
    try:
        with open(out_path, "w+") as out, open(err_path, "w+") as err:
            try:
                r = subprocess.run(
                    [npyfs_bin(), "mount", str(source), str(mnt), *map(str, extra)],
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    timeout=MOUNT_TIMEOUT_AFTER_HANG if _MOUNT_HUNG else MOUNT_TIMEOUT,
                )
                rc = r.returncode
            except subprocess.TimeoutExpired:
                _MOUNT_HUNG.append(True)
                rc = "timeout (daemon mode did not return; mounted: %s)" % is_mounted(mnt)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if rc != 0:
            raise MountError(
                f"npyfs mount {source} {mnt} failed ({rc}):\n{stderr}\n{stdout}",
                (rc, stdout, stderr),
            )
        if not is_mounted(mnt):
            raise MountError(f"npyfs mount exited 0 but {mnt} is not in /proc/self/mountinfo")
        yield mnt
    finally:
        force_unmount(mnt)


@pytest.fixture
def mount(npyfs, tmp_path):
    """Factory: ``with mount(source, *extra_args) as mnt: ...``."""
    counter = [0]

    def _mount(source, *extra, name: str | None = None):
        counter[0] += 1
        mnt = tmp_path / (name or f"mnt{counter[0]}")
        return mounted(source, mnt, *extra)

    return _mount


# --------------------------------------------------------------------------
# misc
# --------------------------------------------------------------------------


def toml_str(s: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def manifest_text(arrays: list[dict]) -> str:
    """TOML text for a list of [[array]] tables (dicts of key -> value)."""
    chunks = []
    for arr in arrays:
        lines = ["[[array]]"]
        for k, v in arr.items():
            lines.append(f"{k} = {toml_value(v)}")
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"


def pytest_report_header(config):
    from oracle_seed import SEED

    return f"npyfs oracle seed: NPYFS_SEED={SEED}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # printed even with -q, so a failing randomized run can be replayed
    from oracle_seed import SEED

    terminalreporter.write_line(f"npyfs oracle seed: NPYFS_SEED={SEED} (binary: {os.environ.get('NPYFS_BIN', REPO / 'target/release/npyfs')})")
