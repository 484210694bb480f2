"""The command line and the daemon: detaching, signals, stale mounts,
read-only behaviour, folder mode, help texts, listing and stat."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    MOUNT_TIMEOUT,
    daemon_pids,
    force_unmount,
    is_mounted,
    manifest_text,
    mounted,
    pid_alive,
    proc_cmdline,
    register_mount,
    run_cli,
    wait_until,
)
from npyhelpers import save_bytes


def _simple_source(root: Path, *, nested: bool = False) -> tuple[Path, dict[str, np.ndarray]]:
    """A manifest with a couple of arrays; returns (manifest, {name: array})."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    a = rng.standard_normal((50, 30))
    b = rng.standard_normal((70, 30))
    np.save(root / "a.npy", a)
    np.save(root / "b.npy", b)
    arrays = [{"name": "all.npy", "parts": ["a.npy", "b.npy"]}]
    expected = {"all.npy": np.concatenate([a, b])}
    if nested:
        for name in ("train/x.npy", "train/y.npy", "test/x.npy", "a/b/c/d.npy"):
            arrays.append({"name": name, "parts": ["b.npy", "a.npy"]})
            expected[name] = np.concatenate([b, a])
    m = root / "m.toml"
    m.write_text(manifest_text(arrays))
    return m, expected


def _the_daemon(mnt) -> int:
    found: list[int] = []

    def look() -> bool:
        found[:] = daemon_pids(mnt)
        return bool(found)

    assert wait_until(look, timeout=5), f"no npyfs process serving {mnt} found in /proc"
    assert len(found) == 1, f"several npyfs processes serve {mnt}: {found}"
    return found[0]


def _proc_stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s.rsplit(")", 1)[1].split()  # [state, ppid, pgrp, session, ...]


# --------------------------------------------------------------------------
# daemon mode
# --------------------------------------------------------------------------


def test_daemon_mode_returns_promptly_with_captured_output(tmp_path, npyfs):
    src, expected = _simple_source(tmp_path / "src")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    register_mount(mnt)
    try:
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                [npyfs, "mount", str(src), str(mnt)],
                capture_output=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                "npyfs mount (daemon mode) did not return within 30 s with captured output "
                f"(mounted: {is_mounted(mnt)}); a daemon that keeps an inherited pipe open, "
                "or a parent that waits for EOF on a pipe the daemon holds, does this"
            )
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert is_mounted(mnt), "exit 0 but the mount is not live"
        assert elapsed < 10, f"mount took {elapsed:.1f}s"
        # the mount is live on return: no sleep needed before reading
        assert (mnt / "all.npy").read_bytes() == save_bytes(expected["all.npy"])
    finally:
        force_unmount(mnt)


def test_daemon_cmdline_and_detachment(tmp_path, mount):
    src, _ = _simple_source(tmp_path / "src")
    with mount(src) as mnt:
        pid = _the_daemon(mnt)
        argv = proc_cmdline(pid)
        assert os.path.basename(argv[0]) == "npyfs", argv
        assert "mount" in argv and str(src) in argv and str(mnt) in argv, argv
        assert argv.index("mount") < argv.index(str(src)) < argv.index(str(mnt)), argv
        ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
        if ps.returncode == 0:
            assert f"mount {src} {mnt}" in ps.stdout, ps.stdout
        fields = _proc_stat_fields(pid)
        assert int(fields[1]) != os.getpid(), "the daemon is still a child of the caller"
        assert int(fields[3]) != os.getsid(0), "the daemon did not leave the caller's session (setsid)"


def test_writes_fail_with_erofs(tmp_path, mount):
    src, expected = _simple_source(tmp_path / "src")
    with mount(src) as mnt:
        path = mnt / "all.npy"
        before = path.read_bytes()
        for mode in ("r+b", "wb", "ab", "xb"):
            with pytest.raises(OSError) as ei:
                open(path, mode).close()
            want = (errno.EROFS, errno.EEXIST) if mode == "xb" else (errno.EROFS,)
            assert ei.value.errno in want, f"open({mode!r}): {ei.value}"
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_APPEND):
            with pytest.raises(OSError) as ei:
                os.close(os.open(path, flags))
            assert ei.value.errno == errno.EROFS, f"os.open(flags={flags:#o}): {ei.value}"
        with pytest.raises(OSError) as ei:
            open(mnt / "new.npy", "wb").close()
        assert ei.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM), ei.value
        for op in (lambda: os.unlink(path), lambda: os.mkdir(mnt / "d"), lambda: os.rename(path, mnt / "z.npy"),
                   lambda: os.truncate(path, 0), lambda: os.chmod(path, 0o777)):  # fmt: skip
            with pytest.raises(OSError) as ei:
                op()
            assert ei.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSYS), ei.value
        assert path.read_bytes() == before


# --------------------------------------------------------------------------
# signals, unmount, stale mounts
# --------------------------------------------------------------------------


def test_sigterm_unmounts_and_daemon_exits(tmp_path, mount):
    src, _ = _simple_source(tmp_path / "src")
    with mount(src) as mnt:
        pid = _the_daemon(mnt)
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not is_mounted(mnt), timeout=10), "SIGTERM did not unmount"
        assert wait_until(lambda: not pid_alive(pid), timeout=10), "daemon still running after SIGTERM"


@pytest.mark.parametrize(
    "sig,flag",
    [(signal.SIGTERM, "--foreground"), (signal.SIGINT, "-f")],
    ids=["SIGTERM", "SIGINT"],
)
def test_foreground_signal_exits_zero(tmp_path, npyfs, sig, flag):
    src, expected = _simple_source(tmp_path / "src")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with open(tmp_path / "fg.out", "w") as out, open(tmp_path / "fg.err", "w") as err:
        proc = subprocess.Popen(
            [npyfs, "mount", str(src), str(mnt), flag], stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
    register_mount(mnt, proc.pid)
    try:
        assert wait_until(lambda: is_mounted(mnt) or proc.poll() is not None, timeout=MOUNT_TIMEOUT)
        assert proc.poll() is None, f"--foreground exited {proc.returncode}: {(tmp_path / 'fg.err').read_text()}"
        assert is_mounted(mnt)
        assert (mnt / "all.npy").read_bytes() == save_bytes(expected["all.npy"])
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"foreground daemon ignored {sig.name}")
        assert rc == 0, f"exit {rc} after {sig.name}: {(tmp_path / 'fg.err').read_text()}"
        assert not is_mounted(mnt), f"{sig.name}: exited but left the mount"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mnt)


def test_foreground_ends_with_exit_0_on_npyfs_unmount(tmp_path, npyfs):
    src, _ = _simple_source(tmp_path / "src")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [npyfs, "mount", str(src), str(mnt), "--foreground"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    register_mount(mnt, proc.pid)
    try:
        assert wait_until(lambda: is_mounted(mnt) or proc.poll() is not None, timeout=MOUNT_TIMEOUT)
        assert proc.poll() is None and is_mounted(mnt)
        r = run_cli("unmount", mnt)
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mnt)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mnt)


HOLDER = r"""
import sys, numpy as np
m = np.load(sys.argv[1], mmap_mode="r")
total = float(np.asarray(m[:5]).sum())
print("ready", total, flush=True)
sys.stdin.read()          # hold the mapping until our stdin closes
"""


def test_sigterm_with_live_mmap_unmounts_lazily(tmp_path, mount):
    src, expected = _simple_source(tmp_path / "src")
    with mount(src) as mnt:
        pid = _the_daemon(mnt)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(mnt / "all.npy")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = holder.stdout.readline()
            assert line.startswith("ready"), (line, holder.stderr.read() if holder.poll() is not None else "")
            os.kill(pid, signal.SIGTERM)
            assert wait_until(lambda: not is_mounted(mnt), timeout=10), (
                "SIGTERM with an open np.load mmap did not unmount (should detach lazily)"
            )
        finally:
            holder.stdin.close()
            try:
                holder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
        assert wait_until(lambda: not pid_alive(pid), timeout=10), (
            "daemon still running after SIGTERM and after the mapping was released"
        )


def test_unmount_clears_stale_mount_after_kill9_and_remount_works(tmp_path, npyfs):
    src, expected = _simple_source(tmp_path / "src")
    mnt = tmp_path / "mnt"
    want = save_bytes(expected["all.npy"])
    with mounted(src, mnt):
        pid = _the_daemon(mnt)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_alive(pid), timeout=10)
        assert is_mounted(mnt), "expected a stale mount after kill -9"
        with pytest.raises(OSError) as ei:
            os.stat(mnt / "all.npy")
        assert ei.value.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO), ei.value
        r = run_cli("unmount", mnt, timeout=30)
        assert r.returncode == 0, f"npyfs unmount of a stale mount exited {r.returncode}: {r.stderr}"
        assert not is_mounted(mnt), "npyfs unmount left the stale mount"
    with mounted(src, mnt):
        assert (mnt / "all.npy").read_bytes() == want


def test_unmount_of_live_mount(tmp_path, mount):
    src, _ = _simple_source(tmp_path / "src")
    with mount(src) as mnt:
        pid = _the_daemon(mnt)
        r = run_cli("unmount", mnt)
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mnt)
        assert wait_until(lambda: not pid_alive(pid), timeout=10), "daemon still running after npyfs unmount"


def test_mount_options_threads_log_file_allow_other(tmp_path, mount):
    src, expected = _simple_source(tmp_path / "src")
    log = tmp_path / "npyfs.log"
    with mount(src, "--threads", "2", "--log-file", log, "--allow-other") as mnt:
        assert (mnt / "all.npy").read_bytes() == save_bytes(expected["all.npy"])
        line = [ln for ln in open("/proc/self/mountinfo") if f" {os.path.realpath(mnt)} " in ln]
        assert line and "allow_other" in line[0], line


def test_mount_on_missing_mountpoint_is_refused(tmp_path, npyfs):
    src, _ = _simple_source(tmp_path / "src")
    mnt = tmp_path / "does-not-exist"
    try:
        r = subprocess.run([npyfs, "mount", str(src), str(mnt)], capture_output=True, text=True, timeout=MOUNT_TIMEOUT)
        assert r.returncode != 0
        assert "does-not-exist" in r.stderr, r.stderr
        assert not is_mounted(mnt)
    finally:
        force_unmount(mnt)


# --------------------------------------------------------------------------
# the file system as seen by tools
# --------------------------------------------------------------------------


def test_stat_size_and_type(tmp_path, mount):
    src, expected = _simple_source(tmp_path / "src")
    with mount(src) as mnt:
        st = os.stat(mnt / "all.npy")
        assert stat.S_ISREG(st.st_mode)
        assert st.st_size == len(save_bytes(expected["all.npy"]))
        assert stat.S_ISDIR(os.stat(mnt).st_mode)
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "nope.npy")


def test_ls_of_nested_names_shows_directories(tmp_path, mount):
    src, expected = _simple_source(tmp_path / "src", nested=True)
    with mount(src) as mnt:
        assert sorted(os.listdir(mnt)) == ["a", "all.npy", "test", "train"]
        for d in ("a", "a/b", "a/b/c", "train", "test"):
            assert stat.S_ISDIR(os.stat(mnt / d).st_mode), d
        assert sorted(os.listdir(mnt / "train")) == ["x.npy", "y.npy"]
        assert os.listdir(mnt / "a/b") == ["c"]
        found = sorted(
            os.path.relpath(os.path.join(dp, f), mnt) for dp, _, fs in os.walk(mnt) for f in fs
        )
        assert found == sorted(expected)
        for name, arr in expected.items():
            assert (mnt / name).read_bytes() == save_bytes(arr), name
        ls = subprocess.run(["ls", "-la", str(mnt), str(mnt / "train")], capture_output=True, text=True)
        assert ls.returncode == 0, ls.stderr
        assert "train" in ls.stdout and "x.npy" in ls.stdout
        assert any(line.startswith("d") and line.endswith(" train") for line in ls.stdout.splitlines()), ls.stdout


def test_reads_past_eof_return_empty(tmp_path, mount):
    src, expected = _simple_source(tmp_path / "src")
    want = save_bytes(expected["all.npy"])
    n = len(want)
    with mount(src) as mnt:
        fd = os.open(mnt / "all.npy", os.O_RDONLY)
        try:
            assert os.pread(fd, 100, n) == b""
            assert os.pread(fd, 1, n + 1) == b""
            assert os.pread(fd, 4096, n + 10**9) == b""
            assert os.pread(fd, 100, n - 10) == want[-10:]
        finally:
            os.close(fd)
        with open(mnt / "all.npy", "rb") as f:
            f.seek(n + 5)
            assert f.read() == b""


# --------------------------------------------------------------------------
# folder mode
# --------------------------------------------------------------------------


def test_folder_mode_with_manifest_merge(tmp_path, mount, run_cli):
    d = tmp_path / "dataset"
    rng = np.random.default_rng(7)
    alpha = {}
    for n in range(1, 13):  # day1 .. day12: natural order, not lexical
        alpha[n] = rng.integers(0, 1000, size=(n, 4), dtype="<i8")
        (d / "alpha").mkdir(parents=True, exist_ok=True)
        np.save(d / "alpha" / f"day{n}.npy", alpha[n])
    beta = [rng.standard_normal((3, 2)).astype("<f4") for _ in range(2)]
    (d / "beta").mkdir()
    np.save(d / "beta" / "p1.npy", beta[0])
    np.save(d / "beta" / "p2.npy", beta[1])
    clash = [rng.standard_normal((2, 5)) for _ in range(2)]
    (d / "gamma").mkdir()
    np.save(d / "gamma" / "a.npy", clash[0])
    np.save(d / "gamma" / "b.npy", clash[1])
    (d / "notes").mkdir()  # no .npy inside: no notes.npy
    (d / "notes" / "readme.txt").write_text("hello")
    (d / "npyfs.toml").write_text(
        manifest_text(
            [
                {"name": "gamma.npy", "parts": ["gamma/b.npy", "gamma/a.npy"], "axis": 1},
                {"name": "extra/beta_stacked.npy", "parts": ["beta/*.npy"], "stack": True},
            ]
        )
    )
    want = {
        "alpha.npy": np.concatenate([alpha[n] for n in range(1, 13)]),
        "beta.npy": np.concatenate(beta),
        "gamma.npy": np.concatenate([clash[1], clash[0]], axis=1),  # manifest wins
        "extra/beta_stacked.npy": np.stack(beta),
    }
    r = run_cli("inspect", d, "--json")
    assert r.returncode == 0, r.stderr
    names = sorted(e["name"] for e in json.loads(r.stdout))
    assert names == sorted(want), names
    with mount(d) as mnt:
        assert sorted(os.listdir(mnt)) == ["alpha.npy", "beta.npy", "extra", "gamma.npy"]
        for name, arr in want.items():
            assert (mnt / name).read_bytes() == save_bytes(arr), name


# --------------------------------------------------------------------------
# help and inspect
# --------------------------------------------------------------------------


def test_top_level_help_lists_subcommands(run_cli):
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    for sub in ("mount", "unmount", "inspect"):
        assert sub in r.stdout, r.stdout


@pytest.mark.parametrize("sub", ["mount", "unmount", "inspect"])
def test_subcommand_help_has_an_example(run_cli, sub):
    r = run_cli(sub, "--help")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "example" in text.lower(), f"`npyfs {sub} --help` shows no example:\n{text}"
    assert f"npyfs {sub} " in text, f"`npyfs {sub} --help` shows no example command line:\n{text}"


def test_inspect_human_output(tmp_path, run_cli):
    src, expected = _simple_source(tmp_path / "src", nested=True)
    r = run_cli("inspect", src)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for name in expected:
        assert name in out, out
    assert "120" in out and "30" in out, out  # shape (120, 30)
    assert "f8" in out or "float64" in out, out
    assert str(120 * 30 * 8) in out or str(len(save_bytes(expected["all.npy"]))) in out, out


def test_inspect_json_fields(tmp_path, run_cli):
    src, expected = _simple_source(tmp_path / "src")
    r = run_cli("inspect", src, "--json")
    assert r.returncode == 0, r.stderr
    (e,) = json.loads(r.stdout)
    assert e["name"] == "all.npy"
    assert np.dtype(e["dtype"]) == np.dtype("<f8")
    assert e["shape"] == [120, 30]
    assert e["fortran_order"] is False
    assert [Path(p).name for p in e["parts"]] == ["a.npy", "b.npy"]
    assert e["nbytes"] in (120 * 30 * 8, len(save_bytes(expected["all.npy"])))
