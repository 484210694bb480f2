"""Permissions and trust, with a real second user (uid/gid 65534 via setpriv).

* a virtual file's mode is the intersection of its parts' modes (minus write
  bits on a read-only mount); its owner is the mounting user;
* --allow-other turns on default_permissions: the kernel checks those bits, so
  another user reads arrays whose parts are world-readable and gets EACCES on
  the others; without --allow-other other users get EACCES on everything;
* symlinked parts resolve to their targets;
* validation runs as the user who runs npyfs: a non-root user cannot name a
  part they cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import force_unmount, manifest_text, mounted, npyfs_bin, run_cli

NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to a second user"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
]


def as_nobody(*cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 60)
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *map(str, cmd)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        **kw,
    )


@pytest.fixture
def world():
    """A 0755 folder under /tmp (pytest's tmp_path may be 0700, closed to nobody)."""
    d = Path(tempfile.mkdtemp(prefix="npyfs-perm-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for mnt in d.glob("mnt*"):
            force_unmount(mnt)
        shutil.rmtree(d, ignore_errors=True)


def save(path: Path, a: np.ndarray, mode: int) -> Path:
    np.save(path, a)
    os.chmod(path, mode)
    return path


@pytest.fixture
def source(world):
    """public: two 0644 parts; secret: 0600 parts; mixed: 0644 + 0640."""
    a = np.arange(12, dtype="<i4").reshape(4, 3)
    b = np.arange(100, 109, dtype="<i4").reshape(3, 3)
    save(world / "pub_a.npy", a, 0o644)
    save(world / "pub_b.npy", b, 0o644)
    save(world / "sec_a.npy", a, 0o600)
    save(world / "sec_b.npy", b, 0o600)
    save(world / "grp_b.npy", b, 0o640)
    m = world / "arrays.toml"
    m.write_text(
        manifest_text(
            [
                {"name": "public.npy", "parts": ["pub_a.npy", "pub_b.npy"]},
                {"name": "secret.npy", "parts": ["sec_a.npy", "sec_b.npy"]},
                {"name": "mixed.npy", "parts": ["pub_a.npy", "grp_b.npy"]},
            ]
        )
    )
    os.chmod(m, 0o644)
    expected = world / "expected.npy"
    np.save(expected, np.concatenate([a, b]))
    return m, expected.read_bytes()


def test_mode_is_intersection_of_parts_and_owner_is_mounting_user(world, source):
    manifest, _ = source
    with mounted(manifest, world / "mnt") as mnt:
        modes = {n: os.stat(mnt / n) for n in ("public.npy", "secret.npy", "mixed.npy")}
    assert {n: s.st_mode & 0o7777 for n, s in modes.items()} == {
        "public.npy": 0o444,
        "secret.npy": 0o400,
        "mixed.npy": 0o440,
    }
    assert all((s.st_uid, s.st_gid) == (os.getuid(), os.getgid()) for s in modes.values())


def test_allow_other_lets_the_kernel_check_the_parts_modes(world, source):
    manifest, expected = source
    with mounted(manifest, world / "mnt", "--allow-other") as mnt:
        r = as_nobody("cat", mnt / "public.npy")
        assert r.returncode == 0, r.stderr
        assert r.stdout == expected
        for name in ("secret.npy", "mixed.npy"):
            r = as_nobody("cat", mnt / name)
            assert r.returncode != 0
            assert b"Permission denied" in r.stderr, (name, r.stderr)
            # the owner still reads it
            assert (mnt / name).read_bytes() == expected
        # listing works for others too
        r = as_nobody("ls", mnt)
        assert r.returncode == 0 and r.stdout.split() == [b"mixed.npy", b"public.npy", b"secret.npy"]


def test_without_allow_other_other_users_get_eacces_on_everything(world, source):
    manifest, expected = source
    with mounted(manifest, world / "mnt") as mnt:
        assert (mnt / "public.npy").read_bytes() == expected
        for cmd in (["cat", mnt / "public.npy"], ["ls", mnt], ["stat", mnt / "public.npy"]):
            r = as_nobody(*cmd)
            assert r.returncode != 0, cmd
            assert b"Permission denied" in r.stderr, (cmd, r.stderr)


def test_symlinked_parts_resolve_to_their_targets(world):
    a = np.arange(6, dtype="<f8").reshape(2, 3)
    b = np.arange(6, 15, dtype="<f8").reshape(3, 3)
    real = world / "real"
    real.mkdir()
    save(real / "a.npy", a, 0o640)
    save(real / "b.npy", b, 0o644)
    links = world / "links"
    links.mkdir()
    (links / "a.npy").symlink_to(real / "a.npy")  # absolute target
    (links / "b.npy").symlink_to(Path("..") / "real" / "b.npy")  # relative target
    m = world / "m.toml"
    m.write_text(manifest_text([{"name": "x.npy", "parts": ["links/a.npy", "links/b.npy"]}]))
    expected = world / "expected.npy"
    np.save(expected, np.concatenate([a, b]))

    r = run_cli("inspect", m, "--json", check=True)
    (info,) = json.loads(r.stdout)
    # inspect names the parts as the manifest does (the link), not the target
    assert info["parts"] == [str(links / "a.npy"), str(links / "b.npy")]
    assert info["shape"] == [5, 3]
    with mounted(m, world / "mnt") as mnt:
        assert (mnt / "x.npy").read_bytes() == expected.read_bytes()
        # the mode is the targets' (0640 & 0644, read-only), not the links' 0777
        assert os.stat(mnt / "x.npy").st_mode & 0o777 == 0o440


def test_a_non_root_user_cannot_name_a_part_they_cannot_read(world, source):
    secret = world / "sec_a.npy"
    assert os.stat(secret).st_uid == 0 and os.stat(secret).st_mode & 0o777 == 0o600
    manifest = world / "secret.toml"
    manifest.write_text(manifest_text([{"name": "secret.npy", "parts": ["pub_a.npy", "sec_a.npy"]}]))
    os.chmod(manifest, 0o644)
    binary = npyfs_bin()
    r = as_nobody(binary, "inspect", manifest)
    if r.returncode == 126 or b"Permission denied" in r.stderr and binary.encode() in r.stderr:
        pytest.skip(f"{binary} is not executable by uid {NOBODY}")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert b"Permission denied" in r.stderr, r.stderr
    assert str(secret).encode() in r.stderr, r.stderr
    # the same manifest minus the unreadable arrays is fine for them
    ok = world / "public.toml"
    ok.write_text(manifest_text([{"name": "public.npy", "parts": ["pub_a.npy", "pub_b.npy"]}]))
    os.chmod(ok, 0o644)
    r = as_nobody(binary, "inspect", ok)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("fusermount3") is None, reason="needs fusermount3 (fuse3)")
def test_a_non_root_user_can_mount_and_reads_only_what_they_could(world, source):
    """npyfs mount run by uid 65534 goes through the setuid fusermount3."""
    manifest, expected = source
    binary = npyfs_bin()
    mnt = world / "mnt_nobody"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    pub = world / "public.toml"
    pub.write_text(manifest_text([{"name": "public.npy", "parts": ["pub_a.npy", "pub_b.npy"]}]))
    os.chmod(pub, 0o644)
    # validation refuses the manifest naming root's 0600 parts, and mounts nothing
    r = as_nobody(binary, "mount", manifest, mnt)
    assert r.returncode != 0 and b"cannot open part: Permission denied" in r.stderr, r.stderr
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        # fuser opens /dev/fuse itself first and gives up on EACCES instead of
        # falling back to fusermount3 (it only falls back when mount(2) says EPERM)
        pytest.skip("/dev/fuse is not read-writable by other users here (mode "
                    f"{os.stat('/dev/fuse').st_mode & 0o777:o}); a non-root mount cannot work")
    try:
        r = as_nobody(binary, "mount", pub, mnt, timeout=30)
        assert r.returncode == 0, r.stderr
        r = as_nobody("cat", mnt / "public.npy")
        assert r.returncode == 0 and r.stdout == expected, r.stderr
        # owned by the mounting user (root itself is shut out: no --allow-other)
        r = as_nobody("stat", "-c", "%u %g %a", mnt / "public.npy")
        assert r.stdout.split() == [b"65534", b"65534", b"444"], r.stdout
        with pytest.raises(PermissionError):
            os.stat(mnt / "public.npy")
        r = as_nobody(binary, "unmount", mnt)
        assert r.returncode == 0, r.stderr
    finally:
        force_unmount(mnt)
